"""Where pdd computes: an NVIDIA GPU (CUDA), else an Apple GPU (MPS), else the CPU.

``resolve_device("auto")`` picks CUDA, then MPS, then the CPU; an explicit name ("cpu",
"cuda", "cuda:1", "mps") is checked against this machine, and a device that is not here is a
`DeviceError` (a ValueError: the command lines print it as a usage error) that says what is.

Apple's MPS backend lacks some operations. PyTorch runs those on the CPU instead when the
environment variable ``PYTORCH_ENABLE_MPS_FALLBACK=1`` is set, but it reads the variable once,
when its library loads (a static registration in ATen's MPSFallback.mm, at ``import torch``):
set later, it only reaches the processes pdd starts. So

- ``prepare_mps_fallback()`` sets it (unless the user did) and must run before ``import torch``:
  this module imports torch only inside functions, so a command-line module can call it first;
- ``resolve_device`` sets it too when it picks MPS (for the processes pdd starts) and prints one
  line saying whether an operation MPS lacks will run on the CPU in this process;
- ``run_with_cpu_fallback(fn, ...)`` runs ``fn`` and, when an operation MPS lacks stops it
  (NotImplementedError: the fallback was off), notes it once and runs ``fn`` again on the CPU.
"""
from __future__ import annotations

import os
import re
import sys

DEVICE_TYPES = ("cpu", "cuda", "mps")
VALID = "auto, cpu, cuda, cuda:N, mps"
MPS_FALLBACK_ENV = "PYTORCH_ENABLE_MPS_FALLBACK"

# True when pdd set the variable after torch had loaded: it then reaches child processes only.
_set_after_torch = False
_noted: set[str] = set()  # one-line notes already printed in this process


class DeviceError(ValueError):
    """A device name that is not valid, or a device that this machine does not have."""


def _note(key: str, text: str, log=None) -> None:
    """Print ``text`` once per process (``log``: a callable taking one string; default stderr)."""
    if key in _noted:
        return
    _noted.add(key)
    (log or (lambda s: print(s, file=sys.stderr, flush=True)))(text)


# ------------------------------------------------------------------ what is here
def cpu_has_native_bf16() -> bool:
    """True on CPUs with native bf16 (AVX512-BF16 / AMX), where autocast pays off (DESIGN: 2x)."""
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cpu_model() -> str:
    """The CPU as /proc/cpuinfo names it, with the flags that decide bf16 speed (timings differ
    a lot between machines: record this beside every figure)."""
    import platform

    try:
        info = open("/proc/cpuinfo").read()
    except OSError:
        return platform.processor() or platform.machine()
    name = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")), "?")
    flags = [f for f in ("amx_bf16", "avx512_bf16", "avx512f", "avx2") if f in info.split()]
    return f"{name} [{' '.join(flags)}], {len([ln for ln in info.splitlines() if ln.startswith('processor')])} cores"


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def mps_available() -> bool:
    import torch

    mps = getattr(torch.backends, "mps", None)  # absent in old or unusual builds
    return bool(mps is not None and mps.is_available())


def _why_no_mps() -> str:
    import torch

    mps = getattr(torch.backends, "mps", None)
    if mps is None or not mps.is_built():
        return "this PyTorch build has no MPS support (MPS exists only in macOS builds, on Apple silicon)"
    return "PyTorch has MPS, but this Mac offers no MPS device (too old a macOS, or no Apple GPU)"


def available() -> list[str]:
    """The device names usable here, best first (what ``auto`` chooses from)."""
    import torch

    names = [f"cuda:{i}" for i in range(torch.cuda.device_count())] if cuda_available() else []
    return names + (["mps"] if mps_available() else []) + ["cpu"]


# ------------------------------------------------------------------ the choice
def resolve_device(name="auto", log=None):
    """``torch.device`` for ``name``: "auto" (CUDA, then MPS, then the CPU), "cpu", "cuda",
    "cuda:N", "mps", or a torch.device. A device this machine lacks, or a name that is none of
    these, raises `DeviceError` naming what is available. Choosing MPS prints one line about
    operations MPS lacks (`note_mps_fallback`)."""
    import torch

    text = str(name if name is not None else "auto").strip().lower()
    if text == "auto":
        device = torch.device("cuda" if cuda_available() else "mps" if mps_available() else "cpu")
    else:
        try:
            device = torch.device(text)
        except (RuntimeError, ValueError):
            device = None
        if device is None or device.type not in DEVICE_TYPES:
            raise DeviceError(f"unknown device {name!r}; valid: {VALID} (here: {', '.join(available())})")
        if device.type == "cuda":
            if not cuda_available():
                built = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "built without CUDA"
                raise DeviceError(f"device {name!r} asked for, but no CUDA GPU is available here (torch "
                                  f"{torch.__version__}, {built}); use 'auto' or one of: {', '.join(available())}")
            n = torch.cuda.device_count()
            if device.index is not None and device.index >= n:
                raise DeviceError(f"device {name!r} asked for, but this machine has {n} CUDA device(s): "
                                  f"{', '.join(f'cuda:{i}' for i in range(n))}")
        elif device.type == "mps":
            if device.index not in (None, 0):
                raise DeviceError(f"device {name!r}: there is one MPS device, 'mps'")
            if not mps_available():
                raise DeviceError(f"device {name!r} asked for, but {_why_no_mps()}; use 'auto' or one of: "
                                  f"{', '.join(available())}")
            device = torch.device("mps")
        elif device.index not in (None, 0):
            raise DeviceError(f"device {name!r}: the CPU is 'cpu'")
    if device.type == "mps":
        note_mps_fallback(log)
    return device


# ------------------------------------------------------------------ operations MPS lacks
def _on(value: str | None) -> bool:
    """PyTorch's reading of the variable: an integer, 0 = off (std::stoi)."""
    try:
        return int(str(value).strip()) != 0
    except ValueError:
        return False


def prepare_mps_fallback(environ=None) -> bool:
    """Set PYTORCH_ENABLE_MPS_FALLBACK=1 unless it is set already (a user's setting is kept);
    True if this call set it. PyTorch reads it when it loads: call this before ``import torch``
    (later, it still reaches the processes pdd starts, which inherit the environment)."""
    global _set_after_torch
    env = os.environ if environ is None else environ
    if MPS_FALLBACK_ENV in env:
        return False
    env[MPS_FALLBACK_ENV] = "1"
    if environ is None and "torch" in sys.modules:
        _set_after_torch = True
    return True


def mps_fallback_active() -> bool:
    """Whether, in this process, PyTorch runs an operation MPS lacks on the CPU: the variable is
    on and was there before torch loaded (a value set after that is invisible to it; one set by
    the user after ``import torch`` cannot be told apart and counts as on)."""
    return _on(os.environ.get(MPS_FALLBACK_ENV)) and not _set_after_torch


def note_mps_fallback(log=None) -> str:
    """Make sure the fallback is set for what pdd starts, and say once, in one line, what happens
    here to an operation MPS lacks. Returns the line."""
    prepare_mps_fallback()
    value = os.environ[MPS_FALLBACK_ENV]
    if mps_fallback_active():
        line = f"pdd: device mps (Apple GPU); an operation MPS lacks runs on the CPU instead ({MPS_FALLBACK_ENV}={value})."
    elif not _set_after_torch:  # the user's own value, which turns the fallback off
        line = (f"pdd: device mps (Apple GPU); {MPS_FALLBACK_ENV}={value} as you set it: an operation MPS "
                f"lacks raises NotImplementedError (where pdd can, it reruns that work on the CPU).")
    else:
        line = (f"pdd: device mps (Apple GPU); PyTorch was loaded before {MPS_FALLBACK_ENV}=1 was set, so here an "
                f"operation MPS lacks raises NotImplementedError (where pdd can, it reruns that work on the CPU); "
                f"set it before starting Python to run only that operation on the CPU.")
    _note("mps-fallback", line, log)
    return line


_MISSING_OP = re.compile(r"operator '([^']+)' is not currently implemented for the MPS device")


def missing_mps_op(exc: BaseException) -> str | None:
    """The operator named by PyTorch's "not implemented for the MPS device" error, else None."""
    if not isinstance(exc, NotImplementedError):
        return None
    m = _MISSING_OP.search(str(exc))
    if m:
        return m.group(1)
    return "an operation" if "MPS" in str(exc) else None


def to_cpu(obj):
    """Tensors in nested tuples, lists and dicts moved to the CPU; everything else as it is."""
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.cpu()
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(x) for x in obj)
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    return obj


def run_with_cpu_fallback(fn, *args, modules=(), what: str = "this work", log=None, **kwargs):
    """``fn(*args, **kwargs)``; when an operation MPS lacks stops it (NotImplementedError, the
    fallback being off), say so once, move ``modules`` (in place) and the tensor arguments to
    the CPU, and call ``fn`` again; any other error propagates. Meant for work that is safe to
    redo from its inputs (a forward pass, an upscale); the modules stay on the CPU afterwards,
    so later calls do not fail again. A half-done training step is not such work."""
    try:
        return fn(*args, **kwargs)
    except NotImplementedError as e:
        op = missing_mps_op(e)
        if op is None:
            raise
    _note(f"cpu-rerun:{what}", f"pdd: {op} is not implemented on MPS; {what} runs on the CPU instead "
          f"(set {MPS_FALLBACK_ENV}=1 before starting Python to move only that operation).", log)
    for m in modules:
        m.to("cpu")
    return fn(*to_cpu(args), **to_cpu(kwargs))


# ------------------------------------------------------------------ small helpers
def synchronize(device) -> None:
    """Wait for the device's queued work (timings on a GPU need it; the CPU is synchronous)."""
    import torch

    kind = torch.device(device).type
    if kind == "cuda":
        torch.cuda.synchronize(device)
    elif kind == "mps":
        torch.mps.synchronize()


def bf16_default(device) -> bool:
    """Whether bf16 autocast is the sensible default on ``device``: on the CPU where it is
    native (AVX512-BF16/AMX; emulated it is many times slower than fp32); on CUDA where the GPU
    has bf16 (torch's autocast raises on one without); never on MPS (Apple GPUs gain little
    from it and fp32 needs no care; not measured here)."""
    import torch

    kind = torch.device(device).type
    if kind == "cuda":
        return torch.cuda.is_bf16_supported()
    if kind == "mps":
        return False
    return cpu_has_native_bf16()


def describe(device) -> str:
    """One line naming the device: the GPU's name, or the CPU with the flags that matter."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    if device.type == "mps":
        name = getattr(getattr(torch.backends, "mps", None), "get_name", None)
        return f"mps ({name() if name else 'Apple GPU'})"

    return f"cpu ({cpu_model()})"


def before_torch(device: str = "auto") -> None:
    """For a command line, before its first ``import torch``: on a Mac, when ``device`` may turn
    out to be MPS, set PYTORCH_ENABLE_MPS_FALLBACK=1 unless the user set it (elsewhere MPS does
    not exist and the environment is left alone)."""
    if sys.platform == "darwin" and str(device).strip().lower() in ("auto", "mps"):
        prepare_mps_fallback()
