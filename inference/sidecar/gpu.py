"""GPU metrics through NVML (``nvidia-ml-py``), only where NVML initialises.

Two parts: ``gpu_families`` maps readings to brix's families (pure, tested with
recorded values), and ``Nvml`` reads them. Without a GPU or a driver ``Nvml.open()``
returns None and the sidecar exports no GPU series at all: absent, not zero.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from brix.contract import metric

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class GpuReading:
    """One GPU at one moment; a field NVML could not read is None."""

    index: int
    utilization_percent: float | None  # nvmlDeviceGetUtilizationRates().gpu, 0-100
    memory_used_bytes: int | None      # nvmlDeviceGetMemoryInfo().used
    memory_total_bytes: int | None     # nvmlDeviceGetMemoryInfo().total


def gpu_families(readings: Sequence[GpuReading], *, model: str) -> list[Metric]:
    """brix's GPU families (label ``gpu``: the NVML index). No readings: no families."""
    if not readings:
        return []
    names = ("brix_gpu_utilization_ratio", "brix_gpu_memory_used_bytes",
             "brix_gpu_memory_total_bytes")
    families = {n: GaugeMetricFamily(n, metric(n).help, labels=["model", "gpu"]) for n in names}
    for r in readings:
        labels = [model, str(r.index)]
        if r.utilization_percent is not None:
            families["brix_gpu_utilization_ratio"].add_metric(
                labels, r.utilization_percent / 100.0
            )
        if r.memory_used_bytes is not None:
            families["brix_gpu_memory_used_bytes"].add_metric(labels, float(r.memory_used_bytes))
        if r.memory_total_bytes is not None:
            families["brix_gpu_memory_total_bytes"].add_metric(
                labels, float(r.memory_total_bytes)
            )
    return [f for f in families.values() if f.samples]


class Nvml:
    """An initialised NVML. ``open()`` gives None where there is no NVML."""

    def __init__(self, nvml: Any) -> None:
        self._nvml = nvml

    @classmethod
    def open(cls) -> Nvml | None:
        try:
            import pynvml
        except ImportError:
            log.info("nvidia-ml-py is not installed: no GPU metrics")
            return None
        try:
            pynvml.nvmlInit()
        except Exception as exc:  # NVMLError_LibraryNotFound, _DriverNotLoaded, ...
            log.info("NVML is not available (%s): no GPU metrics", exc)
            return None
        return cls(pynvml)

    def read(self) -> list[GpuReading]:
        """A reading of every visible GPU; a GPU NVML cannot query is left out."""
        nvml = self._nvml
        try:
            count = int(nvml.nvmlDeviceGetCount())
        except nvml.NVMLError as exc:
            log.warning("NVML: cannot count devices: %s", exc)
            return []
        readings: list[GpuReading] = []
        for index in range(count):
            try:
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
            except nvml.NVMLError as exc:
                log.warning("NVML: GPU %d: %s", index, exc)
                continue
            util: float | None = None
            used: int | None = None
            total: int | None = None
            # A MIG instance, for one, has no utilisation counter.
            with contextlib.suppress(nvml.NVMLError):
                util = float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
            with contextlib.suppress(nvml.NVMLError):
                mem = nvml.nvmlDeviceGetMemoryInfo(handle)
                used, total = int(mem.used), int(mem.total)
            readings.append(GpuReading(index, util, used, total))
        return readings

    def close(self) -> None:
        try:
            self._nvml.nvmlShutdown()
        except self._nvml.NVMLError as exc:  # pragma: no cover - driver gone meanwhile
            log.warning("NVML shutdown: %s", exc)
