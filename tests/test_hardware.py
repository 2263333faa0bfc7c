"""Machine facts read without torch: CPU features from /proc/cpuinfo text, CUDA inferred or asked."""

from __future__ import annotations

import subprocess
import sys

from aerialseg.hardware import Hardware, detect_hardware, parse_cpuinfo

X86 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9R14 96-Core Processor
flags\t\t: fpu vme sse sse2 avx avx2 avx512f avx512bw avx512_bf16 avx512_vnni
processor\t: 1
model name\t: AMD EPYC 9R14 96-Core Processor
flags\t\t: fpu vme sse sse2 avx avx2 avx512f avx512bw avx512_bf16 avx512_vnni
"""
ARM = """processor\t: 0
BogoMIPS\t: 2100.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics asimddp sve bf16 i8mm
CPU implementer\t: 0x41
"""
OLD_X86 = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) CPU E5-2686 v4\nflags\t\t: fpu sse avx avx2 fma\n"


def test_cpuinfo_is_parsed_for_x86_and_arm():
    name, flags = parse_cpuinfo(X86)
    assert name == "AMD EPYC 9R14 96-Core Processor" and {"avx512_bf16", "avx512_vnni"} <= flags
    hardware = Hardware(name, 2, flags)
    assert hardware.native_bf16 and hardware.int8_dot and hardware.bf16_flag == "avx512_bf16"
    name, flags = parse_cpuinfo(ARM)
    arm = Hardware(name, 4, flags)
    assert arm.native_bf16 and arm.int8_dot
    name, flags = parse_cpuinfo(OLD_X86)
    old = Hardware(name, 2, flags)
    assert not old.native_bf16 and not old.int8_dot and "fp32 only" in old.describe()


def test_emulated_bf16_does_not_count():
    """AVX-512 without the BF16 extension runs bf16 through conversions: slower than fp32."""
    assert not Hardware("Skylake-SP", 2, frozenset({"avx512f", "avx512bw", "avx512vl", "avx512dq"})).native_bf16


def test_this_machine_is_described_and_cuda_agrees_with_and_without_torch():
    without = detect_hardware()
    with_torch = detect_hardware(use_torch=True)
    assert without.cores >= 1 and without.cpu and without.cpu_flags == with_torch.cpu_flags
    assert without.cuda == with_torch.cuda
    assert ("no CUDA GPU" in without.describe()) != without.cuda


def test_the_probe_does_not_import_torch_and_respects_hidden_devices():
    code = (
        "import sys; from aerialseg.hardware import detect_hardware; h = detect_hardware(); "
        "print(h.cuda, 'torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"CUDA_VISIBLE_DEVICES": "", "PATH": ""},
    ).stdout.split()
    assert out == ["False", "False"]
