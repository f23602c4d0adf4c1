"""pdd.devices: the device choice (CUDA, then MPS, then the CPU) with availability mocked, the
named errors, and what happens to an operation Apple's MPS lacks (PyTorch's fallback variable,
one note, a rerun on the CPU)."""
import os
import subprocess
import sys

import pytest
import torch

from pdd import devices
from pdd.config import make_config, resolve_device

ENV = devices.MPS_FALLBACK_ENV
# PyTorch's own message when an operator has no MPS kernel and the fallback is off (MPSFallback.mm)
MPS_MISSING = ("The operator 'aten::_fft_r2c' is not currently implemented for the MPS device. If you want this op "
               "to be considered for addition please comment on https://github.com/pytorch/pytorch/issues/141287 "
               "and mention use-case, that resulted in missing op as well as commit hash abc. As a temporary fix, "
               "you can set the environment variable `PYTORCH_ENABLE_MPS_FALLBACK=1` to use the CPU as a fallback "
               "for this op. WARNING: this will be slower than running natively on MPS.")


@pytest.fixture
def machine(monkeypatch):
    """Pretend which accelerators exist; a fresh process state for notes and the variable."""
    monkeypatch.setattr(devices, "_noted", set())
    monkeypatch.setattr(devices, "_set_after_torch", False)
    monkeypatch.delenv(ENV, raising=False)

    def have(cuda=0, mps=False):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: cuda)
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    return have


@pytest.mark.parametrize("cuda, mps, expected", [(1, True, "cuda"), (2, False, "cuda"), (0, True, "mps"), (0, False, "cpu")])
def test_auto_prefers_cuda_then_mps_then_cpu(machine, cuda, mps, expected):
    machine(cuda=cuda, mps=mps)
    assert resolve_device("auto") == torch.device(expected)
    assert resolve_device(None).type == expected  # no device given: auto
    assert devices.available()[-1] == "cpu" and devices.available()[0].split(":")[0] == expected


def test_explicit_names_are_honoured_when_present(machine):
    machine(cuda=2, mps=True)
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CUDA:1 ") == torch.device("cuda", 1)
    assert resolve_device("mps") == torch.device("mps") == resolve_device("mps:0")
    assert resolve_device(torch.device("cuda", 0)) == torch.device("cuda", 0)


def test_cuda_absent_is_a_named_error(machine):
    machine(cuda=0, mps=False)
    for name in ("cuda", "cuda:0", "cuda:1"):
        with pytest.raises(devices.DeviceError, match=r"no CUDA GPU is available here.*one of: cpu"):
            resolve_device(name)
    machine(cuda=2)
    with pytest.raises(devices.DeviceError, match=r"this machine has 2 CUDA device\(s\): cuda:0, cuda:1"):
        resolve_device("cuda:2")


def test_mps_absent_is_a_named_error(machine):
    machine(cuda=1, mps=False)
    with pytest.raises(devices.DeviceError, match="mps.*asked for, but .*MPS.*one of: cuda:0, cpu"):
        resolve_device("mps")
    with pytest.raises(devices.DeviceError, match="one MPS device"):
        resolve_device("mps:1")


@pytest.mark.parametrize("name", ["gpu", "tpu", "", "cuda:x", "meta", "cpu:1", "xla"])
def test_invalid_names_list_the_valid_ones(machine, name):
    machine(cuda=0, mps=False)
    with pytest.raises(ValueError) as e:  # a ValueError: the command lines print it without a traceback
        resolve_device(name)
    assert isinstance(e.value, devices.DeviceError)
    assert "valid: auto, cpu, cuda, cuda:N, mps" in str(e.value) or "the CPU is 'cpu'" in str(e.value)


def test_the_trainer_resolves_its_device_so(machine, tmp_path):
    """pdd.train (and pdd.adapt, which trains through it) start with config.resolve_device."""
    from pdd.train import Trainer

    machine(cuda=0, mps=True)
    tr = Trainer.__new__(Trainer)
    tr._start(make_config("tiny", out=str(tmp_path / "a")), progress=False)
    assert tr.device == torch.device("mps")
    machine(cuda=0, mps=False)
    with pytest.raises(devices.DeviceError, match="no CUDA GPU"):
        Trainer(make_config("tiny", device="cuda", out=str(tmp_path / "b")), progress=False)
    assert not (tmp_path / "b").exists()  # refused before anything was written


# ------------------------------------------------------------------ operations MPS lacks
def test_choosing_mps_sets_the_fallback_and_says_so_once(machine, capsys):
    machine(cuda=0, mps=True)
    resolve_device("auto")
    resolve_device("mps")
    err = capsys.readouterr().err
    assert os.environ[ENV] == "1"  # for the processes pdd starts
    assert err.count("pdd: device mps") == 1 and len(err.strip().splitlines()) == 1
    # torch was loaded before the variable was set: honest about this process
    assert "PyTorch was loaded before" in err and not devices.mps_fallback_active()


def test_a_users_own_setting_is_kept(machine, monkeypatch, capsys):
    machine(cuda=0, mps=True)
    monkeypatch.setenv(ENV, "0")
    resolve_device("mps")
    assert os.environ[ENV] == "0" and "=0 as you set it" in capsys.readouterr().err
    monkeypatch.setattr(devices, "_noted", set())
    monkeypatch.setenv(ENV, "1")
    resolve_device("mps")
    assert devices.mps_fallback_active() and "runs on the CPU instead" in capsys.readouterr().err


def test_no_note_and_no_variable_off_mps(machine, capsys):
    machine(cuda=1, mps=True)
    resolve_device("auto")
    resolve_device("cpu")
    assert ENV not in os.environ and capsys.readouterr().err == ""


def test_prepare_keeps_a_users_value_and_before_torch_only_acts_on_a_mac(machine, monkeypatch):
    env = {}
    assert devices.prepare_mps_fallback(env) is True and env == {ENV: "1"}
    env = {ENV: "0"}
    assert devices.prepare_mps_fallback(env) is False and env == {ENV: "0"}
    monkeypatch.setattr(sys, "platform", "linux")
    devices.before_torch("auto")
    assert ENV not in os.environ
    monkeypatch.setattr(sys, "platform", "darwin")
    devices.before_torch("cpu")
    assert ENV not in os.environ
    devices.before_torch("auto")
    assert os.environ[ENV] == "1"


def test_devices_can_run_before_torch_is_imported():
    """A command line calls before_torch() ahead of its first `import torch` (PyTorch reads the
    variable once, when it loads): pdd.devices must not import torch itself."""
    code = ("import os, sys; import pdd.devices as d; assert 'torch' not in sys.modules, 'torch imported';"
            f"os.environ.pop({ENV!r}, None); d.prepare_mps_fallback(); print(d.mps_fallback_active(), os.environ[{ENV!r}])")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["True", "1"]


def test_missing_op_is_read_from_pytorchs_message():
    assert devices.missing_mps_op(NotImplementedError(MPS_MISSING)) == "aten::_fft_r2c"
    assert devices.missing_mps_op(NotImplementedError("something else")) is None
    assert devices.missing_mps_op(RuntimeError(MPS_MISSING)) is None  # only PyTorch's NotImplementedError


def test_run_with_cpu_fallback_reruns_on_the_cpu_once_noted(capsys, monkeypatch):
    monkeypatch.setattr(devices, "_noted", set())
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 4, 3, padding=1)
    x = torch.rand(1, 3, 8, 8)
    expected = torch.nn.functional.conv2d(x, conv.weight, conv.bias, padding=1)  # the independent route
    moved = []
    conv.to = lambda dev: moved.append(str(dev)) or conv  # record the move (everything is on the CPU here)

    def flaky():
        """Fails on its first call, as an MPS op without a kernel would, then computes."""
        calls = []

        def fn(t, scale=1.0):
            calls.append(t)
            if len(calls) == 1:
                raise NotImplementedError(MPS_MISSING)
            return conv(t) * scale
        return fn, calls

    fn, calls = flaky()
    out = devices.run_with_cpu_fallback(fn, x, modules=[conv], what="upscaling", scale=2.0)
    assert torch.allclose(out, 2 * expected) and len(calls) == 2 and moved == ["cpu"]
    fn, _ = flaky()
    devices.run_with_cpu_fallback(fn, x, modules=[conv], what="upscaling")  # a second time: no second note
    err = capsys.readouterr().err
    assert err.count("aten::_fft_r2c is not implemented on MPS; upscaling runs on the CPU") == 1
    assert len(err.strip().splitlines()) == 1


def test_run_with_cpu_fallback_lets_other_errors_through():
    def boom(exc):
        raise exc
    with pytest.raises(NotImplementedError, match="abstract"):
        devices.run_with_cpu_fallback(boom, NotImplementedError("abstract method"))
    with pytest.raises(TypeError):
        devices.run_with_cpu_fallback(boom, TypeError("Cannot convert a MPS Tensor to float64 dtype"))


def test_to_cpu_walks_nested_arguments():
    a, b = torch.ones(2), torch.zeros(1)
    got = devices.to_cpu({"x": [a, (b, 3)], "y": "text"})
    assert torch.equal(got["x"][0], a) and isinstance(got["x"][1], tuple) and got["x"][1][1] == 3 and got["y"] == "text"


def test_precision_defaults_per_device(monkeypatch):
    from pdd.config import cpu_has_native_bf16, cpu_model

    assert devices.bf16_default("cpu") == cpu_has_native_bf16()
    assert devices.bf16_default("mps") is False
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert devices.bf16_default("cuda") is False  # torch's autocast would raise on such a GPU
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert devices.bf16_default("cuda:0") is True
    assert devices.describe("cpu") == f"cpu ({cpu_model()})"
