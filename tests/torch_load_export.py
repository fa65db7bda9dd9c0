"""Loads lola-c's safetensors exports into the PyTorch mirror models (LoLa's module trees and
state_dict names: tests/torch_dcae.py, tests/torch_vit.py) with strict=True and compares their
forward passes with the ones our binary computed on the same inputs and weights.

Usage: python3 tests/torch_load_export.py DIR [--lola PATH]
  DIR was made by `build/tests/test_safetensors --emit DIR` (tests/t_export.sh): {ae,dm,ns}.safetensors
  (exports) and forward_{ae,dm,ns}.safetensors (inputs + our outputs). The mirror models are built
  from the exports' metadata alone.
Checks, per stage:
  * load_state_dict(strict=True) accepts the file (every parameter and buffer, nothing extra) and
    the file's tensor order equals the module's state_dict order;
  * the buffers equal LoLa's values bit for bit: LayerNorm eps = float32(1e-5), SineEncoding
    freqs = float32(1e3 ** -numpy.linspace(0, 1, n)) (lola/nn/embedding.py);
  * with the reference `safetensors` package installed, its load_file gives the same tensors and
    metadata as our own reader (tools/pth2safetensors.py), else a note says it was not available;
  * forward: the mirror, run in float64 on the exported fp32 weights, matches our fp32 output:
    |ours - ref| <= 2e-5 max|ref| + 2e-4 |ref| elementwise (the parity tolerance of tests/test_vit.c);
  * .pth -> safetensors: torch.save(state_dict) (plain, {"state": ...}, "module."-prefixed, and
    float64) converted by tools/pth2safetensors.py reproduces the export's tensors exactly.
    It leaves DIR/<stage>_from_pth.safetensors and DIR/<stage>_from_pth64.safetensors (F64,
    --keep-dtype), and DIR/<stage>_from_ref.safetensors (written by safetensors.torch.save_file,
    when that package is installed) for `lola import` in t_export.sh.
With --lola PATH (a PolymathicAI/lola checkout; needs einops), the exports are also loaded with
strict=True into LoLa's OWN modules (get_autoencoder, get_denoiser, get_surrogate) and LoLa's own
forward code (AutoEncoder.encode/decode, MaskedDenoiser over ElucidatedDenoiser, MaskedSurrogate)
is compared with our outputs. azula, omegaconf and xformers are replaced by minimal stand-ins when
they are not installed (only their base classes / imports are touched on these code paths), and the
denoiser's schedule by sigma(t) = t so that it receives our noise levels exactly.
Prints PASS/FAIL lines; exit status 1 on any failure.
"""
import contextlib
import io
import json
import os
import subprocess
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tools"))
import torch_dcae  # noqa: E402
import torch_vit  # noqa: E402
import pth2safetensors  # noqa: E402
from pth2safetensors import read_safetensors  # noqa: E402

ATOL_REL, RTOL = 2e-5, 2e-4
failures = 0


def check(ok, msg):
    global failures
    print(("PASS " if ok else "FAIL ") + msg, flush=True)
    if not ok:
        failures += 1


def load(path):
    """Our reader; cross-checked against the reference safetensors package when installed."""
    sd, meta = read_safetensors(path)
    try:
        from safetensors import safe_open
        from safetensors.torch import load_file
    except ImportError:
        print(f"note: the safetensors package is not installed; {os.path.basename(path)} read with tools/pth2safetensors.py only")
        return sd, meta
    ref = load_file(path)
    with safe_open(path, framework="pt") as f:
        rmeta = f.metadata() or {}
    same = set(ref) == set(sd) and all(torch.equal(ref[k], sd[k]) and ref[k].dtype == sd[k].dtype for k in sd)
    check(same and rmeta == meta, f"{os.path.basename(path)}: the reference safetensors package reads the same "
          f"{len(ref)} tensors and {len(rmeta)} metadata entries as our reader")
    return ref, meta


def budget(ours, ref):
    ours, ref = ours.double(), ref.double()
    tol = ATOL_REL * ref.abs().max().item() + RTOL * ref.abs() + 1e-12
    return ((ours - ref).abs() / tol).max().item(), (ours - ref).abs().max().item()


def compare(name, ours, ref):
    b, err = budget(ours, ref)
    check(b <= 1.0, f"{name}: our fp32 forward vs PyTorch float64: max |diff| {err:.3g} "
          f"(max |ref| {ref.abs().max().item():.3g}), {100 * b:.1f}% of the tolerance")


def loads_strict(stage, model, sd):
    try:
        model.load_state_dict(sd, strict=True)
        ok, why = True, ""
    except RuntimeError as e:
        ok, why = False, str(e).replace("\n", " ")[:400]
    check(ok, f"{stage}: the LoLa-named mirror loads the export with load_state_dict(strict=True) {why}")
    order = list(model.state_dict().keys()) == list(read_safetensors(os.path.join(DIR, stage + ".safetensors"))[0].keys())
    check(order, f"{stage}: the file's tensor order is the module's state_dict order")
    return ok


def lola_freqs(n):
    return torch.from_numpy((1e3 ** (-np.linspace(0, 1, n))).astype(np.float32))


def parse_heads(s):
    s = s.strip().strip("{}").strip()
    out = {}
    for part in filter(None, (p.strip() for p in s.split(","))):
        k, v = part.split(":")
        out[int(k)] = int(v)
    return out


def pth_roundtrip(stage, model_fp32, ref_sd):
    """state_dict -> .pth (several wrappings) -> tools/pth2safetensors.py -> same tensors. The tool
    runs as a program for the plain variant of the AE (and a bad input), in-process otherwise
    (each program start re-imports torch, which is slow on a shared 2-core machine)."""
    tool = os.path.join(ROOT, "tools", "pth2safetensors.py")
    sd = model_fp32.state_dict()
    variants = [("plain", sd, [], f"{stage}_from_pth"), ("{'state': ...}", {"state": sd, "epoch": 3}, [], None),
                ("'module.' prefix", {"module." + k: v for k, v in sd.items()}, [], None),
                ("float64", {k: v.double() for k, v in sd.items()}, [], None),
                ("float64 --keep-dtype", {k: v.double() for k, v in sd.items()}, ["--keep-dtype"], f"{stage}_from_pth64")]
    for what, obj, extra, keep in variants:
        pth = os.path.join(DIR, f"{stage}_tmp.pth")
        out = os.path.join(DIR, (keep or f"{stage}_tmp") + ".safetensors")
        torch.save(obj, pth)
        args = [pth, out, "--stage", stage] + extra
        if stage == "ae" and what == "plain":
            r = subprocess.run([sys.executable, tool] + args, capture_output=True, text=True)
            rc, err = r.returncode, r.stderr.strip()
        else:
            with contextlib.redirect_stdout(io.StringIO()):
                rc, err = pth2safetensors.main(args), ""
        if rc != 0:
            check(False, f"{stage}: pth2safetensors ({what}) failed: {err}")
            continue
        got, meta = read_safetensors(out)
        f64 = "--keep-dtype" in extra
        same = list(got) == list(ref_sd) and all(
            (got[k].dtype == torch.float64 if f64 else got[k].dtype == torch.float32) and torch.equal(got[k].float(), ref_sd[k])
            for k in ref_sd)
        check(same and meta.get("stage") == stage,
              f"{stage}: .pth ({what}) -> pth2safetensors reproduces the export's {len(ref_sd)} tensors "
              f"({'F64' if f64 else 'F32'}, same order and values)")
        os.remove(pth)
    if stage != "ae":
        return
    # A bad input is refused with a message (as a program: exit status 1, stderr).
    pth = os.path.join(DIR, "bad.pth")
    torch.save({"epoch": 1, "opt": [1, 2]}, pth)
    r = subprocess.run([sys.executable, tool, pth, os.path.join(DIR, "bad.safetensors")], capture_output=True, text=True)
    check(r.returncode == 1 and "not a state dict" in r.stderr and not os.path.exists(os.path.join(DIR, "bad.safetensors")),
          f"pth2safetensors refuses a .pth without a state dict: {r.stderr.strip()}")
    os.remove(pth)


def save_with_reference(stage, model_fp32):
    """DIR/<stage>_from_ref.safetensors written by the reference package (sorted header, its own data
    order) for `lola import` in t_export.sh; nothing when the package is not installed."""
    try:
        from safetensors.torch import save_file
    except ImportError:
        return
    save_file({k: v.contiguous() for k, v in model_fp32.state_dict().items()},
              os.path.join(DIR, f"{stage}_from_ref.safetensors"), metadata={"format": "pt"})


def run_ae():
    sd, meta = load(os.path.join(DIR, "ae.safetensors"))
    cfg = dict(pix=int(meta["pix_channels"]), lat=int(meta["ae.lat_channels"]), hid_channels=json.loads(meta["ae.hid_channels"]),
               hid_blocks=json.loads(meta["ae.hid_blocks"]), heads=parse_heads(meta["ae.attention_heads"]),
               kernel=int(meta["ae.kernel_size"]), dropout=0.0, identity=False)
    check(meta["ae.ffn_factor"] == "1" and meta["ae.saturation"] == "softclip2",
          "ae: metadata describes a model the mirror implements (ffn_factor 1, softclip2)")
    model = torch_dcae.AutoEncoder(cfg)
    if not loads_strict("ae", model, sd):
        return
    eps = [k for k in sd if k.endswith(".norm.eps")]
    check(len(eps) > 0 and all(sd[k].dtype == torch.float32 and sd[k].shape == () and sd[k].item() == np.float32(1e-5) for k in eps),
          f"ae: {len(eps)} LayerNorm eps buffers are 0-d float32 1e-5, as torch.as_tensor(1e-5)")
    pth_roundtrip("ae", model, sd)
    save_with_reference("ae", model)
    fwd, _ = load(os.path.join(DIR, "forward_ae.safetensors"))
    m64 = model.double().eval()
    with torch.no_grad():
        y, z = m64(fwd["x"].double())
    compare("ae latent z", fwd["z"], z)
    compare("ae output y", fwd["y"], y)


def vit_dims(meta, sec, verify=True):
    g = lambda k: int(meta[f"{sec}.{k}"])  # noqa: E731
    if verify:
        check(g("ffn_factor") == 4 and meta[f"{sec}.qk_norm"] == "true" and meta[f"{sec}.rope"] == "true" and g("patch_size") == 1,
              f"{sec}: metadata describes a model the mirror implements (ffn 4, qk_norm, rope, patch 1)")
    return (int(meta["channels"]), g("emb_features"), g("hid_channels"), g("hid_blocks"), int(meta["spatial"]),
            g("attention_heads"), int(meta["label_features"]))


def run_dm():
    sd, meta = load(os.path.join(DIR, "dm.safetensors"))
    C, M, D, blocks, S, heads, label = vit_dims(meta, "denoiser")
    model = torch_vit.make_dm(C, M, D, blocks, S, heads, label)
    if not loads_strict("dm", model, sd):
        return
    pe, te = "backbone.backbone.positional_embedding.0.freqs", "backbone.time_embedding.0.freqs"
    check(torch.equal(sd[pe], lola_freqs(D // 2)) and torch.equal(sd[te], lola_freqs(M // 2)),
          f"dm: SineEncoding freqs ({D // 2} and {M // 2}) equal LoLa's float32(1e3 ** -linspace(0, 1, n)) bit for bit")
    pth_roundtrip("dm", model, sd)
    save_with_reference("dm", model)
    f, _ = load(os.path.join(DIR, "forward_dm.safetensors"))
    m64 = model.double().eval()
    x_t, mask, y, lab = f["x"].double(), f["mask"].double(), f["y"].double(), f["label"].double()
    sigma = f["sigma"].double()
    s = sigma.reshape(-1, 1, 1, 1, 1)
    with torch.no_grad():  # MaskedDenoiser over ElucidatedDenoiser (lola/diffusion.py)
        xin = torch.where(mask.bool(), torch.sqrt(1 + s ** 2) * y, x_t)
        mean, _ = m64(xin, sigma, lab, mask)
        mean = torch.where(mask.bool(), y, mean)
    compare("dm denoiser mean", f["mean"], mean)


def run_ns():
    sd, meta = load(os.path.join(DIR, "ns.safetensors"))
    C, M, D, blocks, S, heads, label = vit_dims(meta, "surrogate")
    model = torch_vit.make_ns(C, M, D, blocks, S, heads, label)
    if not loads_strict("ns", model, sd):
        return
    check(torch.equal(sd["backbone.positional_embedding.0.freqs"], lola_freqs(D // 2)),
          f"ns: SineEncoding freqs ({D // 2}) equal LoLa's values bit for bit")
    pth_roundtrip("ns", model, sd)
    save_with_reference("ns", model)
    f, _ = load(os.path.join(DIR, "forward_ns.safetensors"))
    m64 = model.double().eval()
    with torch.no_grad():
        out = m64(f["x"].double(), f["mask"].double(), f["label"].double())
    compare("ns surrogate output", f["out"], out)


def _stub_missing_modules():
    """Stand-ins for LoLa's imports that these code paths do not exercise (when not installed)."""
    import types

    def have(name):
        try:
            __import__(name)
            return True
        except ImportError:
            return False

    stubs = {}
    if not have("xformers"):
        core = types.ModuleType("xformers.components.attention.core")
        sparse = types.ModuleType("xformers.sparse")
        sparse.SparseCSRTensor = type("SparseCSRTensor", (), {})
        sparse.utils = types.ModuleType("xformers.sparse.utils")  # lola monkey-patches two functions in it
        core._has_cpp_library = False  # window_size = null never reaches it
        for n in ("xformers", "xformers.components", "xformers.components.attention"):
            stubs[n] = types.ModuleType(n)
        stubs["xformers.components.attention.core"] = core
        stubs["xformers.sparse"] = sparse
    if not have("azula"):
        den = types.ModuleType("azula.denoise")

        class Gaussian:
            def __init__(self, mean, var):
                self.mean, self.var = mean, var

        den.Gaussian, den.GaussianDenoiser = Gaussian, type("GaussianDenoiser", (torch.nn.Module,), {})
        noise = types.ModuleType("azula.noise")
        noise.Schedule = type("Schedule", (torch.nn.Module,), {})
        stubs.update({"azula": types.ModuleType("azula"), "azula.denoise": den, "azula.noise": noise})
    if not have("omegaconf"):
        oc = types.ModuleType("omegaconf")
        oc.DictConfig = dict
        stubs["omegaconf"] = oc
    sys.modules.update(stubs)
    return sorted(k for k in stubs if "." not in k)


class SigmaIsT(torch.nn.Module):
    """Schedule with alpha = 1, sigma(t) = t: the denoiser gets our noise levels exactly."""

    def forward(self, t):
        return torch.ones_like(t), t


def run_lola(path):
    stubbed = _stub_missing_modules()
    if stubbed:
        print(f"note: LoLa cross-check with stand-ins for {', '.join(stubbed)} (not installed)")
    sys.path.insert(0, path)
    from lola.autoencoder import get_autoencoder
    from lola.diffusion import MaskedDenoiser, get_denoiser
    from lola.surrogate import get_surrogate

    def strict(stage, model, sd):
        try:
            model.load_state_dict(sd, strict=True)
            check(True, f"{stage}: LoLa's own module loads the export with load_state_dict(strict=True)")
            return True
        except RuntimeError as e:
            check(False, f"{stage}: LoLa's own module refuses the export: {str(e)[:400]}")
            return False

    sd, meta = read_safetensors(os.path.join(DIR, "ae.safetensors"))
    ae = get_autoencoder(int(meta["pix_channels"]), int(meta["ae.lat_channels"]), saturation=meta["ae.saturation"],
                         hid_channels=json.loads(meta["ae.hid_channels"]), hid_blocks=json.loads(meta["ae.hid_blocks"]),
                         attention_heads=parse_heads(meta["ae.attention_heads"]), ffn_factor=int(meta["ae.ffn_factor"]),
                         kernel_size=int(meta["ae.kernel_size"]), identity_init=True)
    if strict("ae", ae, sd):
        f, _ = read_safetensors(os.path.join(DIR, "forward_ae.safetensors"))
        ae = ae.double().eval()
        with torch.no_grad():
            z = ae.encode(f["x"].double())
            y = ae.decode(z, noisy=False)
        compare("ae (LoLa's module) latent z", f["z"], z)
        compare("ae (LoLa's module) output y", f["y"], y)

    for stage, sec in (("dm", "denoiser"), ("ns", "surrogate")):
        sd, meta = read_safetensors(os.path.join(DIR, stage + ".safetensors"))
        C, M, D, blocks, S, heads, label = vit_dims(meta, sec, verify=False)
        kw = dict(arch="vit", emb_features=M, label_features=label, hid_channels=D, hid_blocks=blocks, attention_heads=heads,
                  ffn_factor=4, qk_norm=True, rope=True, spatial=S, patch_size=1, dropout=None)
        if stage == "dm":
            from types import SimpleNamespace

            model = get_denoiser(C, masked=True, schedule=SimpleNamespace(name="log_logit", sigma_min=1e-3, sigma_max=1e3), **kw)
        else:
            model = get_surrogate(C, **kw)
        if not strict(stage, model, sd):
            continue
        f, _ = read_safetensors(os.path.join(DIR, f"forward_{stage}.safetensors"))
        model = model.double().eval()
        mask, lab = f["mask"].double(), f["label"].double()
        with torch.no_grad():
            if stage == "dm":
                model.schedule = SigmaIsT()
                outs = []
                for b in range(mask.shape[0]):  # LoLa samples with one scalar t for the whole batch
                    sl = slice(b, b + 1)
                    md = MaskedDenoiser(model, f["y"][sl].double(), mask[sl].bool())
                    outs.append(md(f["x"][sl].double(), f["sigma"][b].double(), label=lab[sl], cond=mask[sl]).mean)
                out = torch.cat(outs)
                compare("dm (LoLa's MaskedDenoiser) mean", f["mean"], out)
            else:
                out = model(f["x"].double(), mask, lab)
                compare("ns (LoLa's MaskedSurrogate) output", f["out"], out)


if __name__ == "__main__":
    args = sys.argv[1:]
    lola_path = None
    if len(args) == 3 and args[1] == "--lola":
        lola_path = args[2]
        args = args[:1]
    if len(args) != 1:
        print(__doc__)
        sys.exit(2)
    DIR = args[0]
    torch.manual_seed(0)
    fns = [run_ae, run_dm, run_ns] + ([lambda: run_lola(lola_path)] if lola_path else [])
    for fn in fns:
        try:
            fn()
        except Exception as e:  # a crash is a failure with its reason, not a silent skip
            check(False, f"{fn.__name__}: {type(e).__name__}: {e}")
    sys.exit(1 if failures else 0)
