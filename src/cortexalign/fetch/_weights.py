"""Catalogue entries of the official model checkpoints, with the checks their publishers allow.

=======================  =================================================  ===================
entry                    official file                                      checked by
=======================  =================================================  ===================
sam-vit-b / -l / -h      dl.fbaipublicfiles.com/segment_anything/*.pth      MD5 (its first six
                                                                            hex are in the name)
sam2-hiera-t/s/b+/l      dl.fbaipublicfiles.com/segment_anything_2/072824/  size (none published)
mobile-sam               github.com/ChaoningZhang/MobileSAM weights/        git blob id
efficient-sam-vit-t/-s   github.com/yformer/EfficientSAM weights/           git blob id (-s: a
                                                                            zip, unpacked)
edge-sam, edge-sam-3x     huggingface.co/spaces/chongzhou/EdgeSAM weights/   hub SHA-256
clip-vit-b16             openaipublic.azureedge.net/clip/models/<sha256>/   SHA-256 (in the URL,
                                                                            as clip.py checks)
open-clip-vit-b16        huggingface.co/laion/CLIP-ViT-B-16-laion2B-s34B    hub SHA-256
=======================  =================================================  ===================

GitHub files are fetched at the commit whose blob ids are recorded here, so the id cannot drift.
``size_hint`` values are approximate (for listings); the exact size is the server's.
"""

from __future__ import annotations

from cortexalign.fetch._catalogue import RemoteFile, Source, register_source

__all__ = ["WEIGHT_FILES", "MODEL_CHECKPOINTS", "checkpoint_entry"]

_FB = "https://dl.fbaipublicfiles.com"
_MOBILE = ("https://github.com/ChaoningZhang/MobileSAM/raw/"
           "a509aac54fdd7af59f843135f2f7cee307283c88/weights")
_EFFICIENT = ("https://github.com/yformer/EfficientSAM/raw/"
              "d525f622e6f640acf5a0fc37c7ca1f243da5bde0/weights")
_EDGE = "https://huggingface.co/spaces/chongzhou/EdgeSAM/resolve/main/weights"  # its README's
_CLIP_B16_SHA256 = "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f"
_MB = 1_000_000

#: entry name -> its one file
WEIGHT_FILES: dict[str, RemoteFile] = {
    "sam-vit-b": RemoteFile("sam_vit_b_01ec64.pth", f"{_FB}/segment_anything/sam_vit_b_01ec64.pth",
                            md5="01ec64d29a2fca3f0661936605ae66f8", size_hint=375 * _MB),
    "sam-vit-l": RemoteFile("sam_vit_l_0b3195.pth", f"{_FB}/segment_anything/sam_vit_l_0b3195.pth",
                            md5="0b3195507c641ddb6910d2bb5adee89c", size_hint=1250 * _MB),
    "sam-vit-h": RemoteFile("sam_vit_h_4b8939.pth", f"{_FB}/segment_anything/sam_vit_h_4b8939.pth",
                            md5="4b8939a88964f0f4ff5f5b2642c598a6", size_hint=2560 * _MB),
    "sam2-hiera-t": RemoteFile("sam2_hiera_tiny.pt",
                               f"{_FB}/segment_anything_2/072824/sam2_hiera_tiny.pt",
                               size_hint=156 * _MB),
    "sam2-hiera-s": RemoteFile("sam2_hiera_small.pt",
                               f"{_FB}/segment_anything_2/072824/sam2_hiera_small.pt",
                               size_hint=184 * _MB),
    "sam2-hiera-b-plus": RemoteFile("sam2_hiera_base_plus.pt",
                                    f"{_FB}/segment_anything_2/072824/sam2_hiera_base_plus.pt",
                                    size_hint=324 * _MB),
    "sam2-hiera-l": RemoteFile("sam2_hiera_large.pt",
                               f"{_FB}/segment_anything_2/072824/sam2_hiera_large.pt",
                               size_hint=898 * _MB),
    "mobile-sam": RemoteFile("mobile_sam.pt", f"{_MOBILE}/mobile_sam.pt",
                             git_sha1="7ef2d090979fd9853adf17b7a99c8b94a1c5a6a7",
                             size_hint=39 * _MB),
    "efficient-sam-vit-t": RemoteFile("efficient_sam_vitt.pt", f"{_EFFICIENT}/efficient_sam_vitt.pt",
                                      git_sha1="af883c49e33c68f01107be52df0ecad26a48355f",
                                      size_hint=41 * _MB),
    "efficient-sam-vit-s": RemoteFile("efficient_sam_vits.pt",
                                      f"{_EFFICIENT}/efficient_sam_vits.pt.zip",
                                      git_sha1="fa4e9f05f753e109dbde052f97d37903b833cf53",
                                      unpack="zip", unpack_member="efficient_sam_vits.pt",
                                      size_hint=98 * _MB),
    "edge-sam": RemoteFile("edge_sam.pth", f"{_EDGE}/edge_sam.pth", server_digest="hf-sha256",
                           size_hint=39 * _MB),
    "edge-sam-3x": RemoteFile("edge_sam_3x.pth", f"{_EDGE}/edge_sam_3x.pth",
                              server_digest="hf-sha256", size_hint=39 * _MB),
    "clip-vit-b16": RemoteFile("ViT-B-16.pt", "https://openaipublic.azureedge.net/clip/models/"
                               f"{_CLIP_B16_SHA256}/ViT-B-16.pt", sha256=_CLIP_B16_SHA256,
                               size_hint=351 * _MB),
    "open-clip-vit-b16": RemoteFile("open_clip_model.safetensors", "https://huggingface.co/laion/"
                                    "CLIP-ViT-B-16-laion2B-s34B-b88K/resolve/main/"
                                    "open_clip_model.safetensors", server_digest="hf-sha256",
                                    size_hint=599 * _MB),
}

#: registered model name (cortexalign.models) -> the entry holding its official checkpoint
MODEL_CHECKPOINTS: dict[str, str] = {
    "sam_vit_b": "sam-vit-b", "sam_vit_l": "sam-vit-l", "sam_vit_h": "sam-vit-h",
    "sam2_hiera_t": "sam2-hiera-t", "sam2_hiera_s": "sam2-hiera-s",
    "sam2_hiera_b_plus": "sam2-hiera-b-plus", "sam2_hiera_l": "sam2-hiera-l",
    "mobile_sam": "mobile-sam", "efficient_sam_vit_t": "efficient-sam-vit-t",
    "efficient_sam_vit_s": "efficient-sam-vit-s", "edge_sam": "edge-sam",
    "edge_sam_3x": "edge-sam-3x",
}

_APACHE = "Apache-2.0"
_META = dict(
    sam=("Segment Anything (Kirillov et al. 2023) {v} checkpoint, official", _APACHE,
         "https://github.com/facebookresearch/segment-anything#model-checkpoints",
         "https://github.com/facebookresearch/segment-anything/blob/main/LICENSE", "sam"),
    sam2=("SAM 2 (Ravi et al. 2024) Hiera-{v} checkpoint (072824 release), official", _APACHE,
          "https://github.com/facebookresearch/sam2#download-checkpoints",
          "https://github.com/facebookresearch/sam2/blob/main/LICENSE", "sam2"),
    mobile=("MobileSAM (Zhang et al. 2023) TinyViT checkpoint, official", _APACHE,
            "https://github.com/ChaoningZhang/MobileSAM",
            "https://github.com/ChaoningZhang/MobileSAM/blob/master/LICENSE", "mobile-sam"),
    efficient=("EfficientSAM (Xiong et al. 2024) ViT-{v} checkpoint, official", _APACHE,
               "https://github.com/yformer/EfficientSAM",
               "https://github.com/yformer/EfficientSAM/blob/main/LICENSE", "efficient-sam"),
    edge=("EdgeSAM{v} (Zhou et al. 2023) RepViT-M1 checkpoint, official",
          "S-Lab License 1.0 (non-commercial)",
          "https://github.com/chongzhou96/EdgeSAM",
          "https://github.com/chongzhou96/EdgeSAM/blob/master/LICENSE", "edge-sam"),
    clip=("OpenAI CLIP ViT-B/16 (Radford et al. 2021), the file clip.load() downloads", "MIT",
          "https://github.com/openai/CLIP", "https://github.com/openai/CLIP/blob/main/LICENSE",
          "clip"),
    open_clip=("OpenCLIP ViT-B/16 laion2b_s34b_b88k (Cherti et al. 2023), safetensors", "MIT",
               "https://github.com/mlfoundations/open_clip",
               "https://github.com/mlfoundations/open_clip/blob/main/LICENSE", "clip"),
)


def _loader(entry: str) -> str:
    model = next((m for m, e in MODEL_CHECKPOINTS.items() if e == entry), None)
    if model is not None:
        return (f"load_model('{model}') uses it once fetched (converted on load); or "
                f"weights: <path>")
    return {
        "clip-vit-b16": "clip.load(path) (a TorchScript archive, which cortexalign never "
                        "unpickles); cortexalign reads the same weights as "
                        "timm:vit_base_patch16_clip_224.openai (cortexalign fetch timm:...)",
        "open-clip-vit-b16": "open_clip.create_model('ViT-B-16', pretrained=path); the same "
                             "weights in timm: timm:vit_base_patch16_clip_224.laion2b",
    }[entry]


def _add(name: str, family: str, variant: str = "") -> None:
    title, terms, home, terms_url, doc = _META[family]
    rf = WEIGHT_FILES[name]

    def plan(fetcher, filters) -> list[RemoteFile]:
        return [WEIGHT_FILES[name]]

    plan.__doc__ = f"The one file of {name}."
    weight = f"~{rf.size_hint / 1e6:,.0f} MB" if rf.size_hint else "?"
    register_source(Source(name, title.format(v=variant), "weights", home, terms, terms_url,
                           weight, _loader(name), plan, doc=f"docs/sources/{doc}.md"))


for _name, _fam, _v in [("sam-vit-b", "sam", "ViT-B"), ("sam-vit-l", "sam", "ViT-L"),
                        ("sam-vit-h", "sam", "ViT-H"), ("sam2-hiera-t", "sam2", "T"),
                        ("sam2-hiera-s", "sam2", "S"), ("sam2-hiera-b-plus", "sam2", "B+"),
                        ("sam2-hiera-l", "sam2", "L"), ("mobile-sam", "mobile", ""),
                        ("efficient-sam-vit-t", "efficient", "T"),
                        ("efficient-sam-vit-s", "efficient", "S"), ("edge-sam", "edge", ""),
                        ("edge-sam-3x", "edge", "-3x"),
                        ("clip-vit-b16", "clip", ""), ("open-clip-vit-b16", "open_clip", "")]:
    _add(_name, _fam, _v)


def checkpoint_entry(model_name: str) -> str | None:
    """The catalogue entry holding the official checkpoint of a registered model, if any."""
    return MODEL_CHECKPOINTS.get(model_name)
