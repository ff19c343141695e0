"""Fr NTTs on a device, for record recovery on a proof server: the encode pipeline's bit-reversal and
butterfly-stage kernels (backends/kernels/encode.py) over a batch of transforms.

Like backends/cuda/msm.py it drives the GPU or its CPU emulation with the same launches. Small
transforms stay on the CPU backend: below MIN_DEVICE_ROWS rows the copies cost more than the work.
"""

from __future__ import annotations

import threading

import numpy as np

from autonomys_farmer.backends.cuda.pipeline import Device
from autonomys_farmer.backends.kernels import encode as kx
from autonomys_farmer.protocol import field

MIN_DEVICE_ROWS = 1 << 12  # elements in a call (all transforms together) worth a trip to the device


class DeviceNtt:
    """Batched radix-2 NTTs of (batch, n, 8) Montgomery rows (see Compute.ntt)."""

    def __init__(self, device: Device) -> None:
        self.device = device
        self.stream = device.stream()
        self._twiddles: dict[bool, object] = {}
        self._lock = threading.Lock()

    def __call__(self, blocks: np.ndarray, inverse: bool) -> np.ndarray:
        batch, n = blocks.shape[0], blocks.shape[1]
        field.check_domain_size(n)
        host = np.array(blocks, np.uint32, copy=True)
        if n == 1 or batch == 0:
            return host
        d, s = self.device, self.stream
        with self._lock:
            if inverse not in self._twiddles:
                self._twiddles[inverse] = d.to_device(np.ascontiguousarray(field.twiddles(inverse)))
            twiddles = self._twiddles[inverse]
            x = d.empty(host.shape, np.uint32)
            d.upload(host, x, stream=s)
            d.grid(kx.BIT_REVERSE, batch * n, x, n.bit_length() - 1, stream=s)
            length = 2
            while length <= n:
                d.grid(kx.NTT_STAGE, batch * n // 2, x, twiddles, length, field.MAX_DOMAIN, stream=s)
                length <<= 1
            d.download(x, host, stream=s)
            d.synchronize(s)
        return host
