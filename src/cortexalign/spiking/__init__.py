"""Brain-inspired spiking transformers: neurons, attention, models, training and measures."""
