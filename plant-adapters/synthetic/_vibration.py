"""Vibration: synthesise a short velocity waveform, then measure it like a monitor would.

Theory of operation
-------------------
Each reading synthesises ``samples`` points of casing velocity (mm/s) at
``sample_rate`` and derives the published features from that waveform with
numpy's FFT, so the features are related the way they are on a real machine
(more bearing impacts raise RMS, kurtosis and the bearing band together).

The waveform is a sum of

* a line at 1x running speed (unbalance) and 2x (misalignment, Piotrowski,
  *Shaft Alignment Handbook*, 3rd ed., ch. 1), plus machine-specific lines
  (pump vane pass, milling tooth pass), at fixed phases: a snapshot starting
  at simulated time ``t0`` sees them where a keyphasor would;
* white Gaussian noise (sensor and structure);
* for a worn rolling-element bearing, one impact per ball pass over the
  outer-race defect, at the ball-pass frequency outer race

      BPFO = (n / 2) * f_r * (1 - (d / D) * cos(phi))

  (n balls, ball diameter d, pitch diameter D, contact angle phi; Harris &
  Kotzalas, *Rolling Bearing Analysis*, 5th ed.), each impact ringing a
  structural resonance as a damped sinusoid. Impact times jitter by about 1 %
  because the rolling elements slip, and impact strengths vary (Randall &
  Antoni, "Rolling element bearing diagnostics — A tutorial", MSSP 25 (2011)
  485-520, §2). Late-stage wear also puts a line at BPFO itself into the
  low-frequency velocity spectrum.

Features, all from one ``rfft`` of the (rectangular-windowed) waveform:

* ``rms``: broadband velocity RMS over 10-1000 Hz, the ISO 10816-3 /
  ISO 20816-1 measure for machines above 600 rpm, by Parseval over the band's
  bins. ISO 10816-3 group 2 (15-300 kW) on rigid foundations puts the zone
  boundaries A/B, B/C, C/D at 1.4, 2.8 and 4.5 mm/s: a healthy machine here
  sits near 1 mm/s, a badly worn bearing above 4.5.
* ``kurtosis``: Pearson kurtosis E[y^4] / E[y^2]^2 of the waveform band-passed
  (FFT mask) to the bearing resonance band. The band holds only noise on a
  healthy machine, so the kurtosis is about 3 (Gaussian); impacts make it
  impulsive and the kurtosis rises (Dwyer 1983; Antoni, "The spectral
  kurtosis", MSSP 20 (2006) 282-307). Computing it on the raw waveform would
  be useless: the 1x sine alone has kurtosis 1.5.
* ``band_1x`` / ``band_2x``: RMS of the spectral line at 1x / 2x running
  speed (bins within ``line_halfwidth`` of it, which catches the leakage of a
  line between bins).
* ``band_bearing``: RMS velocity in the bearing resonance band.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "VibrationFeatures",
    "VibrationSource",
    "VibrationSpec",
    "bpfo_hz",
    "measure",
    "measure_waveform",
    "synthesize",
]

# Fixed phases of the tonal components relative to the keyphasor (arbitrary, but
# constant: a real rotor's unbalance does not jump between readings).
_PHASE_1X = 0.7
_PHASE_2X = 1.9
_PHASE_DEFECT = 0.3
_IMPACT_JITTER = 0.01  # share of the impact period: rolling-element slip
_IMPACT_SPREAD = 0.25  # relative standard deviation of impact strength


@dataclass(frozen=True, slots=True, kw_only=True)
class VibrationSpec:
    """How a machine's vibration is sampled and analysed."""

    sample_rate: float = 8192.0  # Hz
    samples: int = 4096  # 0.5 s at 8192 Hz: 2 Hz lines
    rms_band: tuple[float, float] = (10.0, 1000.0)  # ISO 10816-3 broadband
    bearing_band: tuple[float, float] = (500.0, 2500.0)  # where bearing impacts ring
    resonance: float = 900.0  # Hz, the structural mode bearing impacts excite
    damping: float = 0.08  # damping ratio of that mode
    noise: float = 0.3  # mm/s RMS white noise over 0..sample_rate/2
    line_halfwidth: int = 3  # bins either side of a spectral line


@dataclass(frozen=True, slots=True, kw_only=True)
class VibrationSource:
    """What excites the machine during one reading."""

    running_hz: float  # shaft speed
    unbalance: float  # mm/s peak at 1x
    misalignment: float  # mm/s peak at 2x
    tones: tuple[tuple[float, float], ...] = ()  # (Hz, mm/s peak): vane pass, tooth pass
    bpfo: float = 0.0  # Hz, ball-pass frequency outer race
    impact: float = 0.0  # mm/s peak ring-down per bearing impact (0: healthy bearing)
    defect_line: float = 0.0  # mm/s peak of the BPFO line (late-stage wear)


@dataclass(frozen=True, slots=True, kw_only=True)
class VibrationFeatures:
    rms: float  # mm/s, 10-1000 Hz
    kurtosis: float  # dimensionless, bearing band
    band_1x: float  # mm/s RMS
    band_2x: float  # mm/s RMS
    band_bearing: float  # mm/s RMS


def bpfo_hz(running_hz: float, *, balls: float, ratio: float, contact_angle: float) -> float:
    """Ball-pass frequency outer race; ``ratio`` = d/D, ``contact_angle`` in degrees."""
    return 0.5 * balls * running_hz * (1.0 - ratio * math.cos(math.radians(contact_angle)))


def synthesize(
    source: VibrationSource, spec: VibrationSpec, *, t0: float, rng: np.random.Generator
) -> np.ndarray:
    """``spec.samples`` points of velocity (mm/s) starting at simulated time ``t0``."""
    n = spec.samples
    t = t0 + np.arange(n) / spec.sample_rate
    w = 2.0 * math.pi * source.running_hz
    x = source.unbalance * np.sin(w * t + _PHASE_1X)
    x += source.misalignment * np.sin(2.0 * w * t + _PHASE_2X)
    for freq, amplitude in source.tones:
        x += amplitude * np.sin(2.0 * math.pi * freq * t)
    if source.defect_line > 0.0 and source.bpfo > 0.0:
        x += source.defect_line * np.sin(2.0 * math.pi * source.bpfo * t + _PHASE_DEFECT)
    x += rng.normal(0.0, spec.noise, n)
    if source.impact > 0.0 and source.bpfo > 0.0:
        x += _impacts(source, spec, t, rng)
    return x


def _impacts(
    source: VibrationSource, spec: VibrationSpec, t: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    period = 1.0 / source.bpfo
    # From one impact before the window (its ring-down reaches into it) to the end.
    k = np.arange(math.floor(t[0] / period) - 1, math.ceil(t[-1] / period) + 1)
    times = np.sort(k * period + rng.normal(0.0, _IMPACT_JITTER * period, k.size))
    strength = source.impact * np.clip(1.0 + _IMPACT_SPREAD * rng.standard_normal(k.size), 0, None)
    # Each sample rings from the latest impact only: the mode decays within a
    # ball pass (damping * 2*pi*f_n * period >> 1 for the defaults).
    idx = np.searchsorted(times, t, side="right") - 1
    since = t - times[np.maximum(idx, 0)]
    wn = 2.0 * math.pi * spec.resonance
    wd = wn * math.sqrt(1.0 - spec.damping**2)
    ring = strength[np.maximum(idx, 0)] * np.exp(-spec.damping * wn * since) * np.sin(wd * since)
    return np.where(idx >= 0, ring, 0.0)


def measure_waveform(x: np.ndarray, spec: VibrationSpec, *, running_hz: float) -> VibrationFeatures:
    """The published features of one waveform."""
    n = x.size
    spectrum = np.fft.rfft(x)
    freqs = np.fft.rfftfreq(n, 1.0 / spec.sample_rate)
    power = np.abs(spectrum) ** 2

    def band_rms(lo: float, hi: float) -> float:
        # Parseval for a one-sided spectrum: each bin k (not DC/Nyquist) holds
        # half the power of a line, so the RMS is sqrt(2 * sum |X_k|^2) / n.
        mask = (freqs >= lo) & (freqs <= hi)
        return math.sqrt(2.0 * float(power[mask].sum())) / n

    def line_rms(freq: float) -> float:
        resolution = spec.sample_rate / n
        # Clamp to the lowest analysed frequency: a stopped spindle has no 1x line,
        # and the bins near DC carry offsets, not vibration.
        centre = max(freq, spec.rms_band[0])
        half = spec.line_halfwidth * resolution
        return band_rms(centre - half, centre + half)

    lo, hi = spec.bearing_band
    filtered = np.fft.irfft(np.where((freqs >= lo) & (freqs <= hi), spectrum, 0.0), n)
    # The FFT treats the record as periodic: the jump between its last and first
    # sample (the 1x line rarely fits a whole number of periods) rings through the
    # band-pass as a spike at both ends, which would read as an impact. Judge the
    # middle three quarters, where that ringing has died away.
    middle = filtered[n // 8 : n - n // 8]
    m2 = float(np.mean(middle**2))
    kurtosis = float(np.mean(middle**4)) / (m2 * m2) if m2 > 0.0 else 3.0
    return VibrationFeatures(
        rms=band_rms(*spec.rms_band),
        kurtosis=kurtosis,
        band_1x=line_rms(running_hz),
        band_2x=line_rms(2.0 * running_hz),
        band_bearing=band_rms(lo, hi),
    )


def measure(
    source: VibrationSource, spec: VibrationSpec, *, t0: float, rng: np.random.Generator
) -> VibrationFeatures:
    """Synthesise one waveform and measure it."""
    wave = synthesize(source, spec, t0=t0, rng=rng)
    return measure_waveform(wave, spec, running_hz=source.running_hz)
