"""Every Triton kernel of the package compiles for an H100 (sm_90), on a machine without a GPU.

The interpreter (``TRITON_INTERPRET=1``) runs the kernels' logic on the CPU but accepts code the
compiler rejects (a plain Python global read inside a kernel, say). Triton compiles ahead of time
for a named target with the ``ptxas`` it ships, so each kernel is lowered to sm_90 machine code
here, with the constexpr combinations the launchers use.
"""

from __future__ import annotations

import pytest

triton = pytest.importorskip("triton")
tl = pytest.importorskip("triton.language")
try:
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
except ImportError as err:  # an older Triton without the ahead-of-time API
    pytest.skip(f"this Triton has no ahead-of-time compile API ({err})", allow_module_level=True)

from cortexalign.models.attention import _received_triton as rt  # noqa: E402
from cortexalign.spiking import _lif_triton as lif  # noqa: E402

H100 = GPUTarget("cuda", 90, 32)


def _compile(kernel, signature: dict, constexprs: dict, **options):
    fn = kernel.fn if isinstance(kernel, triton.runtime.Autotuner) else kernel  # the JIT function
    sig = {**signature, **{k: "constexpr" for k in constexprs}}
    return triton.compile(ASTSource(fn=fn, signature=sig, constexprs=constexprs), target=H100,
                          options=options)


@pytest.mark.parametrize("dtype", ["bf16", "fp16", "fp32"])
def test_received_map_kernels_compile_for_sm90(dtype):  # KW is a runtime int: both bias paths
    bias = {"bf16": tl.bfloat16, "fp16": tl.float16, "fp32": tl.float32}[dtype]
    meta = dict(HAS_REL=True, BLOCK_D=64, PRECISION="ieee", BIAS_DTYPE=bias,
                BLOCK_Q=128, BLOCK_K=64)
    tensors = {name: f"*{dtype}" for name in ("q_ptr", "k_ptr", "rh_ptr", "rw_ptr")}
    ints = {name: "i32" for name in ("TQ", "TK", "D", "KH", "KW")}
    lse = _compile(rt._lse_kernel, {**tensors, "lse_ptr": "*fp32", **ints}, meta,
                   num_warps=4, num_stages=2)
    colsum = _compile(rt._colsum_kernel, {**tensors, "lse_ptr": "*fp32", "w_ptr": "*fp32",
                                          "out_ptr": "*fp32", "H": "i32", **ints,
                                          "LSE_STRIDE": "i32"}, meta, num_warps=8, num_stages=2)
    for k in (lse, colsum):
        assert k.asm["cubin"] and "sm_90" in k.asm["ptx"]
    assert k.metadata.shared <= 227 * 1024  # fits an H100 block's shared memory


@pytest.mark.parametrize("has_v0", [True, False])
def test_lif_kernels_compile_for_sm90(has_v0):
    ptrs = ["x_ptr", "v0_ptr", "h_ptr", "s_ptr", "v_ptr"]
    scalars = {"numel": "i64", "tau": "fp32", "v_th": "fp32", "v_reset": "fp32"}
    fwd = _compile(lif._lif_fwd, {**{p: "*fp32" for p in ptrs}, **scalars},
                   dict(T=4, HAS_V0=has_v0, BLOCK=1024))
    bwd = _compile(lif._lif_bwd, {**{p: "*fp32" for p in ["h_ptr", "gs_ptr", "gv_ptr", "gx_ptr",
                                                        "gv0_ptr"]}, **scalars, "alpha": "fp32"},
                   dict(T=4, SURROGATE=0, DETACH=False, HAS_GS=True, HAS_GV=not has_v0,
                        STORE_GV0=has_v0, BLOCK=1024))
    for k in (fwd, bwd):
        assert k.asm["cubin"] and "sm_90" in k.asm["ptx"]
