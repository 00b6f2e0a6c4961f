"""GPU metrics: the pure mapping with recorded NVML values, the reader, and NVML's absence."""

from __future__ import annotations

import shutil
from types import SimpleNamespace
from typing import Any

import pynvml
import pytest

from brix.contract import metric
from inference.sidecar.gpu import GpuReading, Nvml, gpu_families
from tests.unit.inference_sidecar.exposition import render, samples, types

# Recorded from an 8-GPU H100 80GB node (nvidia-smi: 81559 MiB total) under load;
# GPU 7 is a MIG-enabled device whose utilisation NVML does not report.
RECORDED = [
    GpuReading(0, 37.0, 41_234_567_168, 85_520_809_984),
    GpuReading(1, 100.0, 79_811_887_104, 85_520_809_984),
    GpuReading(7, None, 1_073_741_824, 85_520_809_984),
]


def test_recorded_readings_map_to_ratios_and_bytes_per_gpu() -> None:
    text = render(gpu_families(RECORDED, model="llama-70b"))
    got = samples(text)

    def at(name: str, gpu: str) -> float:
        return got[(name, (("gpu", gpu), ("model", "llama-70b")))]

    assert at("brix_gpu_utilization_ratio", "0") == pytest.approx(0.37)
    assert at("brix_gpu_utilization_ratio", "1") == 1.0
    assert ("brix_gpu_utilization_ratio", (("gpu", "7"), ("model", "llama-70b"))) not in got
    assert at("brix_gpu_memory_used_bytes", "1") == 79_811_887_104
    assert at("brix_gpu_memory_used_bytes", "7") == 1_073_741_824
    assert at("brix_gpu_memory_total_bytes", "0") == 85_520_809_984
    assert len(got) == 2 + 3 + 3
    for name, typ in types(text).items():
        assert metric(name).type == typ == "gauge"
        assert metric(name).labels == ("model", "gpu")


def test_no_readings_no_families() -> None:
    assert gpu_families([], model="m") == []


def _recorded_nvml(*, fail_count: bool = False) -> Any:
    """A stand-in for the pynvml module answering with recorded values (the real
    NVMLError class, so that the reader's error handling is the real one)."""
    mem = {0: SimpleNamespace(used=41_234_567_168, total=85_520_809_984, free=0),
           1: SimpleNamespace(used=512, total=1024, free=512)}
    util = {0: SimpleNamespace(gpu=37, memory=12)}

    def count() -> int:
        if fail_count:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_DRIVER_NOT_LOADED)
        return 3

    def handle(i: int) -> int:
        if i == 2:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)
        return i

    def utilization(h: int) -> SimpleNamespace:
        if h not in util:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return util[h]

    return SimpleNamespace(
        NVMLError=pynvml.NVMLError, nvmlDeviceGetCount=count,
        nvmlDeviceGetHandleByIndex=handle, nvmlDeviceGetUtilizationRates=utilization,
        nvmlDeviceGetMemoryInfo=lambda h: mem[h], nvmlShutdown=lambda: None,
    )


def test_reader_skips_lost_gpus_and_unsupported_counters() -> None:
    readings = Nvml(_recorded_nvml()).read()
    assert readings == [
        GpuReading(0, 37.0, 41_234_567_168, 85_520_809_984),
        GpuReading(1, None, 512, 1024),
    ]


def test_reader_with_a_failing_driver_reads_nothing() -> None:
    assert Nvml(_recorded_nvml(fail_count=True)).read() == []


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine has a GPU")
def test_nvml_is_absent_on_a_machine_without_a_gpu() -> None:
    assert Nvml.open() is None
