"""Dry synthesizers for the procedural classes, one short function each.

Each takes the clip length in samples, its knobs (pitch and rate as multipliers around 1,
intensity in 0..1, direction +1/-1) and a generator, and returns float64 audio at 16 kHz.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import signal

from generative.corpus.effects import SAMPLE_RATE as SR
from generative.corpus.effects import bandpass, highpass, lowpass

Rng = np.random.Generator


@dataclass(frozen=True)
class Knobs:
    pitch: float = 1.0
    rate: float = 1.0
    intensity: float = 0.5
    direction: float = 1.0


Synth = Callable[[int, Knobs, Rng], np.ndarray]


# ---- building blocks -------------------------------------------------------------------


def _t(n: int) -> np.ndarray:
    return np.arange(n) / SR


def _phase(freq: np.ndarray | float, n: int) -> np.ndarray:
    if np.isscalar(freq):
        return 2 * np.pi * float(freq) * _t(n)  # type: ignore[arg-type]
    return 2 * np.pi * np.cumsum(freq) / SR


def _harmonics(phase: np.ndarray, count: int, tilt: float = 1.0) -> np.ndarray:
    return np.asarray(sum(np.sin(k * phase) / k**tilt for k in range(1, count + 1)))


def _decay(seconds: float, tau: float) -> np.ndarray:
    return np.exp(-_t(max(1, int(seconds * SR))) / tau)


def _ping(
    freq: float, seconds: float, tau: float, partials: Sequence[float] = (1.0,)
) -> np.ndarray:
    t = _t(int(seconds * SR))
    out = np.zeros_like(t)
    for i, ratio in enumerate(partials):
        f = freq * ratio
        if f < SR / 2 - 200:
            out += np.sin(2 * np.pi * f * t) * np.exp(-t / (tau / (1 + 0.6 * i))) / (1 + i)
    return out


def _burst(rng: Rng, seconds: float, lo: float, hi: float, tau: float) -> np.ndarray:
    return bandpass(rng.standard_normal(int(seconds * SR)), lo, hi) * _decay(seconds, tau)


def _poisson(n: int, per_second: float, rng: Rng, start: float = 0.0) -> np.ndarray:
    count = max(1, int(n / SR * per_second * 1.5) + 4)
    times = start + np.cumsum(rng.exponential(1.0 / per_second, count))
    return times[times < n / SR]


def _periodic(n: int, period: float, rng: Rng, jitter: float = 0.0, start: float = 0.05):
    times = np.arange(start, n / SR, period)
    return times + rng.uniform(-jitter, jitter, len(times)) * period


def _scatter(
    n: int, times: np.ndarray, templates: Sequence[np.ndarray], rng: Rng, amps=None
) -> np.ndarray:
    """Add a randomly chosen template at each time (seconds), with optional amplitudes."""
    out = np.zeros(n)
    if len(times) == 0:
        return out
    amps = np.broadcast_to(np.asarray(1.0 if amps is None else amps, float), (len(times),))
    which = rng.integers(len(templates), size=len(times))
    for k, template in enumerate(templates):
        impulses = np.zeros(n)
        sel = which == k
        idx = np.clip((times[sel] * SR).astype(int), 0, n - 1)
        np.add.at(impulses, idx, amps[sel])
        if impulses.any():
            out += signal.fftconvolve(impulses, template)[:n]
    return out


def _smooth_noise(n: int, rng: Rng, hz: float) -> np.ndarray:
    """Slowly wandering control signal in about -1..1."""
    control = lowpass(rng.standard_normal(n), hz, order=1)
    return control / (np.max(np.abs(control)) + 1e-12)


def _gate(n: int, on_s: float, off_s: float, offset: float = 0.0) -> np.ndarray:
    cycle = (_t(n) + offset) % (on_s + off_s)
    return lowpass((cycle < on_s).astype(float), 200.0)


# ---- alarms, signals, vehicles ---------------------------------------------------------


def siren(n: int, k: Knobs, rng: Rng) -> np.ndarray:
    sweep = np.sin(2 * np.pi * 0.35 * k.rate * _t(n) + rng.uniform(0, 6.3))
    return _harmonics(_phase(750 * k.pitch * (1 + 0.3 * sweep), n), 4, tilt=1.5)


def alarm(n: int, k: Knobs, rng: Rng) -> np.ndarray:
    tone = np.sign(np.sin(_phase(2200 * k.pitch, n)))
    beeps = _gate(n, 0.06 / k.rate, 0.06 / k.rate) * _gate(n, 0.5 / k.rate, 0.45 / k.rate)
    return lowpass(tone, 5000) * beeps


def car_engine(n: int, k: Knobs, rng: Rng) -> np.ndarray:
    firing = 28 * k.pitch * (1 + 0.12 * _smooth_noise(n, rng, 0.5))
    body = _harmonics(_phase(firing, n), 12)
    rasp = lowpass(rng.standard_normal(n), 600) * (1 + np.sin(_phase(firing, n)))
    return lowpass(body + (0.5 + k.intensity) * rasp, 900)


def motorcycle(n: int, k: Knobs, rng: Rng) -> np.ndarray:
    revs = np.clip(_smooth_noise(n, rng, 0.4 * k.rate), 0, 1)
    firing = 45 * k.pitch * (1 + 0.8 * revs)
    body = _harmonics(_phase(firing, n), 25, tilt=0.8)
    rasp = highpass(rng.standard_normal(n), 800) * (1 + np.sin(_phase(firing, n))) ** 2
    return lowpass(body + 0.3 * rasp, 2500)


def car_horn(n: int, k: Knobs, rng: Rng) -> np.ndarray:
    tone = _harmonics(_phase(410 * k.pitch, n), 10) + _harmonics(_phase(520 * k.pitch, n), 10)
    honk = rng.uniform(0.25, 0.8) / k.rate
    return bandpass(tone, 300, 3500) * _gate(n, honk, 0.3 / k.rate, offset=-0.05)


def helicopter(n: int, k: Knobs, rng: Rng) -> np.ndarray:
    chop = 14 * k.rate * (1 + 0.03 * _smooth_noise(n, rng, 0.3))
    blades = np.exp(-6 * ((np.cumsum(chop) / SR) % 1.0))
    wash = bandpass(rng.standard_normal(n), 80, 1200) * blades
    whine = 0.05 * np.sin(_phase(2800 * k.pitch, n))
    return wash + 0.4 * np.sin(_phase(chop, n)) * blades + whine


def train(n: int, k: Knobs, rng: Rng) -> np.ndarray:
    chuffs = _periodic(n, 0.4 / k.rate, rng, jitter=0.05)
    chuff = [_burst(rng, 0.25, 200 * k.pitch, 2500, 0.07) for _ in range(3)]
    clacks = _periodic(n, 1.1 / k.rate, rng, jitter=0.02, start=0.3)
    clack = [_ping(900, 0.08, 0.01, (1, 2.4)) + _burst(rng, 0.08, 1000, 4000, 0.01)]
    rumble = lowpass(rng.standard_normal(n), 150) * 0.5
    return _scatter(n, chuffs, chuff, rng) + 0.5 * _scatter(n, clacks, clack, rng) + rumble


def whistle(n: int, k: Knobs, rng: Rng) -> np.ndarray:
    trill = 1 + 0.04 * np.sign(np.sin(2 * np.pi * 28 * _t(n)))
    tone = np.sin(_phase(2800 * k.pitch * trill, n)) + 0.15 * highpass(rng.standard_normal(n), 3000)
    return tone * _gate(n, rng.uniform(0.3, 0.9) / k.rate, 0.35 / k.rate, offset=-0.05)


def beep(n: int, k: Knobs, rng: Rng) -> np.ndarray:
    length = rng.uniform(0.12, 0.4)
    return np.sin(_phase(1000 * k.pitch, n)) * _gate(n, length, 0.8 / k.rate, offset=-0.05)


def buzzer(n: int, k: Knobs, rng: Rng) -> np.ndarray:
    tone = _harmonics(_phase(180 * k.pitch, n), 30, tilt=1.0)
    return tone * _gate(n, rng.uniform(0.5, 1.2) / k.rate, 0.5 / k.rate, offset=-0.05)


def phone_ring(n: int, k: Knobs, rng: Rng) -> np.ndarray:
    clapper = 0.5 + 0.5 * np.sign(np.sin(2 * np.pi * 20 * _t(n)))
    bells = np.sin(_phase(1000 * k.pitch, n)) + 0.7 * np.sin(_phase(1250 * k.pitch, n))
    return lowpass(clapper, 300) * bells * _gate(n, 1.6 / k.rate, 2.0 / k.rate, offset=-0.1)


def dial_tone(n: int, k: Knobs, rng: Rng) -> np.ndarray:
    return np.sin(_phase(350.0, n)) + np.sin(_phase(440.0, n))


def sonar_ping(n: int, k: Knobs, rng: Rng) -> np.ndarray:
    ping = _ping(1500 * k.pitch, 1.0, 0.25)
    echo_at = rng.uniform(0.4, 0.8)
    echo = np.concatenate([np.zeros(int(echo_at * SR)), 0.3 * lowpass(ping, 2500)])
    template = np.concatenate([ping, np.zeros(len(echo) - len(ping))]) + echo
    return _scatter(n, _periodic(n, 2.0 / k.rate, rng), [template], rng)


# ---- weather and nature ----------------------------------------------------------------


def rain(n: int, k: Knobs, rng: Rng) -> np.ndarray:
    bed = bandpass(rng.standard_normal(n), 300, 5000) * (0.2 + 0.8 * k.intensity)
    drops = [_ping(f, 0.02, 0.003) for f in rng.uniform(2000, 5000, 6)]
    times = _poisson(n, 50 + 400 * k.intensity, rng)
    return bed + 2.0 * _scatter(n, times, drops, rng, rng.uniform(0.2, 1.0, len(times)))


def wind(n: int, k: Knobs, rng: Rng) -> np.ndarray:
    gusts = 0.55 + 0.45 * _smooth_noise(n, rng, 0.3) * (0.4 + k.intensity)
    low = bandpass(rng.standard_normal(n), 150 * k.pitch, 800 * k.pitch)
    high = bandpass(rng.standard_normal(n), 800 * k.pitch, 2200 * k.pitch)
    return low * gusts + high * np.clip(gusts, 0, None) ** 3 * k.intensity


def thunder(n: int, k: Knobs, rng: Rng) -> np.ndarray:
    crack = np.zeros(n)
    burst = _burst(rng, min(0.4, n / SR), 300, 6000, 0.08) * (0.3 + k.intensity)
    start = int(rng.uniform(0.05, 0.3) * SR)
    crack[start : start + len(burst)] = burst[: n - start]
    brown = lowpass(np.cumsum(rng.standard_normal(n)), 200)
    brown = highpass(brown, 20)
    rolls = np.abs(_smooth_noise(n, rng, 2.0)) * np.exp(-_t(n) / (1.0 + 2.5 * k.intensity))
    return crack + brown / (np.max(np.abs(brown)) + 1e-12) * rolls


def stream(n: int, k: Knobs, rng: Rng) -> np.ndarray:
    bed = bandpass(rng.standard_normal(n), 300, 3000) * (0.7 + 0.3 * _smooth_noise(n, rng, 2.0))
    bubbles = [_chirp(f, 0.04, 0.015) for f in rng.uniform(400, 1500, 8) * k.pitch]
    times = _poisson(n, 30 * k.rate, rng)
    return 0.3 * bed + _scatter(n, times, bubbles, rng, rng.uniform(0.3, 1.0, len(times)))


def ocean_waves(n: int, k: Knobs, rng: Rng) -> np.ndarray:
    period = 7.0 / k.rate
    swell = (0.5 - 0.5 * np.cos(2 * np.pi * (_t(n) / period + rng.uniform()))) ** 2 + 0.1
    wash = lowpass(rng.standard_normal(n), 1500) * swell
    foam = highpass(rng.standard_normal(n), 2500) * swell**3
    return wash + 0.5 * foam


def fire_crackle(n: int, k: Knobs, rng: Rng) -> np.ndarray:
    roar = lowpass(highpass(np.cumsum(rng.standard_normal(n)), 30), 400)
    roar /= np.max(np.abs(roar)) + 1e-12
    pops = [_burst(rng, 0.006, 1500, 7000, 0.0015) for _ in range(5)]
    times = _poisson(n, 8 + 40 * k.intensity, rng)
    return 0.3 * roar + _scatter(n, times, pops, rng, rng.uniform(0.2, 1.0, len(times)) ** 2)


def dripping(n: int, k: Knobs, rng: Rng) -> np.ndarray:
    drops = [_chirp(f, 0.08, 0.03) for f in rng.uniform(800, 1100, 3) * k.pitch]
    return _scatter(n, _periodic(n, 0.8 / k.rate, rng, jitter=0.2, start=0.1), drops, rng)


def crickets(n: int, k: Knobs, rng: Rng) -> np.ndarray:
    carrier = np.sin(_phase(min(4500 * k.pitch, 7000), int(0.015 * SR)))
    pulse = carrier * np.hanning(len(carrier))
    gap = np.zeros(int(0.015 * SR))
    chirp = np.concatenate([np.concatenate([pulse, gap]) for _ in range(int(rng.integers(3, 6)))])
    return _scatter(n, _periodic(n, 0.5 / k.rate, rng, jitter=0.05), [chirp], rng)


def bird_chirp(n: int, k: Knobs, rng: Rng) -> np.ndarray:
    chirps = []
    for _ in range(4):
        m = int(rng.uniform(0.06, 0.15) * SR)
        f = np.linspace(2500, rng.uniform(3200, 4500), m) * min(k.pitch, 1.5)
        f *= 1 + 0.05 * np.sin(2 * np.pi * rng.uniform(30, 60) * _t(m))
        chirps.append(np.sin(_phase(f, m)) * np.hanning(m))
    return _scatter(n, _poisson(n, 3 * k.rate, rng), chirps, rng)


def frog_croak(n: int, k: Knobs, rng: Rng) -> np.ndarray:
    m = int(0.3 * SR)
    pulses = (np.sin(2 * np.pi * 32 * _t(m)) > 0.6).astype(float)
    croak = bandpass(pulses, 200 * k.pitch, 900 * k.pitch) * np.hanning(m)
    return _scatter(n, _periodic(n, 1.2 / k.rate, rng, jitter=0.2), [croak], rng)


def bubbling(n: int, k: Knobs, rng: Rng) -> np.ndarray:
    bubbles = [_chirp(f, 0.03, 0.01) for f in rng.uniform(200, 900, 8) * k.pitch]
    times = _poisson(n, 60 * k.rate, rng)
    return _scatter(n, times, bubbles, rng, rng.uniform(0.3, 1.0, len(times)))


def _chirp(freq: float, seconds: float, tau: float) -> np.ndarray:
    """A water drop or bubble: a sine whose pitch rises as it decays."""
    m = int(seconds * SR)
    f = freq * (1 + 2.0 * _t(m) / seconds)
    return np.sin(_phase(f, m)) * np.exp(-_t(m) / tau)


# ---- people, household, mechanical -----------------------------------------------------


def footsteps(n: int, k: Knobs, rng: Rng) -> np.ndarray:
    cutoff = 1400 - 800 * k.intensity
    step = [_burst(rng, 0.12, 60, cutoff, 0.025) + 0.5 * _ping(80, 0.12, 0.03) for _ in range(3)]
    return _scatter(n, _periodic(n, 0.55 / k.rate, rng, jitter=0.08), step, rng)


def knock(n: int, k: Knobs, rng: Rng) -> np.ndarray:
    tap = [_ping(180 * k.pitch, 0.12, 0.02) + _burst(rng, 0.12, 200, 2000, 0.005)]
    times: list[float] = []
    start = 0.1
    while start < n / SR - 0.3:
        count = int(rng.integers(2, 5))
        times += [start + i * 0.2 / k.rate for i in range(count)]
        start += count * 0.2 / k.rate + rng.uniform(0.8, 1.5)
    return _scatter(n, np.array(times), tap, rng, 0.5 + k.intensity)


def doorbell(n: int, k: Knobs, rng: Rng) -> np.ndarray:
    ding = _ping(659 * k.pitch, 1.5, 0.6, (1.0, 2.0, 3.0, 4.2))
    dong = _ping(523 * k.pitch, 1.8, 0.7, (1.0, 2.0, 3.0, 4.2))
    template = np.concatenate([ding[: int(0.6 * SR)], np.zeros(len(dong))])
    template[int(0.6 * SR) :] += dong
    return _scatter(n, _periodic(n, 3.0 / k.rate, rng), [template], rng)


def church_bell(n: int, k: Knobs, rng: Rng) -> np.ndarray:
    partials = (0.5, 1.0, 1.19, 1.5, 2.0, 2.5, 3.0, 4.2)
    strike = _ping(280 * k.pitch, 4.0, 2.0, partials)
    return _scatter(n, _periodic(n, 2.2 / k.rate, rng), [strike], rng)


def wind_chimes(n: int, k: Knobs, rng: Rng) -> np.ndarray:
    notes = [_ping(f * k.pitch, 1.5, 0.6, (1.0, 2.76, 5.4)) for f in (1200, 1500, 1800, 2250, 2700)]
    times = _poisson(n, 3 * k.rate, rng)
    return _scatter(n, times, notes, rng, rng.uniform(0.3, 1.0, len(times)))


def click(n: int, k: Knobs, rng: Rng) -> np.ndarray:
    tick = [_burst(rng, 0.02, 2000, 7000, 0.001) + 0.3 * _ping(3000 * k.pitch, 0.02, 0.003)]
    return _scatter(n, _periodic(n, 0.5 / k.rate, rng, jitter=0.3), tick, rng)


def clock_tick(n: int, k: Knobs, rng: Rng) -> np.ndarray:
    tick = _burst(rng, 0.03, 2000, 5000, 0.003) + 0.5 * _ping(2500 * k.pitch, 0.03, 0.004)
    tock = _burst(rng, 0.03, 1500, 4000, 0.003) + 0.5 * _ping(2000 * k.pitch, 0.03, 0.004)
    times = _periodic(n, 0.5 / k.rate, rng, start=0.1)
    out = _scatter(n, times[::2], [tick], rng)
    return out + _scatter(n, times[1::2], [tock], rng)


def typing(n: int, k: Knobs, rng: Rng) -> np.ndarray:
    keys = []
    for _ in range(4):
        press = _burst(rng, 0.03, 1500, 6000, 0.004) + 0.3 * _ping(300, 0.03, 0.008)
        lift = 0.5 * _burst(rng, 0.03, 2000, 6000, 0.003)
        gap = np.zeros(int(rng.uniform(0.06, 0.1) * SR))
        keys.append(np.concatenate([press, gap, lift]))
    times = _poisson(n, 7 * k.rate, rng, start=0.05)
    return _scatter(n, times, keys, rng, rng.uniform(0.5, 1.0, len(times)))


def electrical_hum(n: int, k: Knobs, rng: Rng) -> np.ndarray:
    mains = float(rng.choice([50.0, 60.0])) * k.pitch
    hum = _harmonics(_phase(mains, n), 9, tilt=0.7)
    buzz = np.clip(3 * np.sin(_phase(2 * mains, n)), -1, 1) * k.intensity
    return hum + buzz + 0.05 * rng.standard_normal(n)


def fan(n: int, k: Knobs, rng: Rng) -> np.ndarray:
    blades = 1 + 0.3 * np.sin(_phase(35 * k.rate, n))
    air = lowpass(rng.standard_normal(n), 1500) * blades
    return air + 0.1 * np.sin(_phase(300 * k.pitch, n))


def glass_clink(n: int, k: Knobs, rng: Rng) -> np.ndarray:
    clinks = [_ping(f * k.pitch, 0.5, 0.2, (1.0, 2.32, 4.25, 6.63)) for f in (2000, 2300, 2600)]
    times = np.sort(rng.uniform(0.05, max(0.1, n / SR - 0.5), int(rng.integers(1, 4))))
    return _scatter(n, times, clinks, rng)


def coins(n: int, k: Knobs, rng: Rng) -> np.ndarray:
    hits = [_ping(f, 0.1, 0.04, (1.0, 1.6)) for f in rng.uniform(3000, 7000, 8)]
    times: list[float] = []
    start = 0.05
    while start < n / SR - 0.5:
        times += list(start + np.sort(rng.uniform(0, 0.6, int(rng.integers(8, 25)))))
        start += rng.uniform(1.0, 2.0) / k.rate
    return _scatter(n, np.array(times), hits, rng, rng.uniform(0.2, 1.0, len(times)))


def zipper(n: int, k: Knobs, rng: Rng) -> np.ndarray:
    teeth = (rng.uniform(size=n) < 200 * k.rate / SR).astype(float)
    pulls = _gate(n, rng.uniform(0.4, 1.0), 0.7, offset=-0.1)
    return bandpass(teeth, 1000, 6000) * pulls


def camera_shutter(n: int, k: Knobs, rng: Rng) -> np.ndarray:
    snap = _burst(rng, 0.03, 1500, 7000, 0.003)
    gap = np.zeros(int(rng.uniform(0.03, 0.08) * SR))
    winder = 0.2 * _burst(rng, 0.3, 800, 3000, 1.0) * np.hanning(int(0.3 * SR))
    shot = np.concatenate([snap, gap, 0.7 * snap, np.zeros(int(0.05 * SR)), winder])
    return _scatter(n, _periodic(n, 1.0 / k.rate, rng, jitter=0.2, start=0.1), [shot], rng)


def hammering(n: int, k: Knobs, rng: Rng) -> np.ndarray:
    hit = [
        _ping(1800 * k.pitch, 0.15, 0.06, (1.0, 2.7, 5.1))
        + (0.3 + k.intensity) * _ping(120, 0.15, 0.03)
    ]
    return _scatter(n, _periodic(n, 0.5 / k.rate, rng, jitter=0.1), hit, rng)


def sawing(n: int, k: Knobs, rng: Rng) -> np.ndarray:
    strokes = np.abs(np.sin(np.pi * 1.5 * k.rate * _t(n))) ** 0.7
    return bandpass(rng.standard_normal(n), 800, 5000) * strokes


def bouncing_ball(n: int, k: Knobs, rng: Rng) -> np.ndarray:
    bounce = [_ping(400 * k.pitch, 0.1, 0.015) + _burst(rng, 0.1, 500, 3000, 0.003)]
    times, amps = [], []
    start = 0.05
    while start < n / SR - 0.2:
        gap, amp = 0.5 / k.rate, 1.0
        while gap > 0.03 and start < n / SR:
            times.append(start)
            amps.append(amp)
            start, gap, amp = start + gap, gap * 0.75, amp * 0.8
        start += 0.5
    return _scatter(n, np.array(times), bounce, rng, amps)


# ---- synthetic, abstract, body ---------------------------------------------------------


def laser(n: int, k: Knobs, rng: Rng) -> np.ndarray:
    m = int(0.15 * SR)
    f = 3000 * k.pitch * np.exp(-np.log(10) * _t(m) / 0.15)
    zap = _harmonics(_phase(f, m), 3) * np.exp(-_t(m) / 0.08)
    return _scatter(n, _periodic(n, 0.5 / k.rate, rng, jitter=0.3), [zap], rng)


def whoosh(n: int, k: Knobs, rng: Rng) -> np.ndarray:
    m = int(rng.uniform(0.5, 1.2) / k.rate * SR)
    shape = np.hanning(m) ** 2
    noise = rng.standard_normal(m)
    bright = np.linspace(0, 1, m) if rng.uniform() < 0.5 else np.linspace(1, 0, m)
    swoosh = (lowpass(noise, 500) * (1 - bright) + bandpass(noise, 800, 4000) * bright) * shape
    return _scatter(n, _periodic(n, m / SR + rng.uniform(0.3, 1.0), rng), [swoosh], rng)


def sweep(n: int, k: Knobs, rng: Rng) -> np.ndarray:
    m = max(int(min(n / SR, 2.0 / k.rate) * SR), 1)
    lo, hi = 200 * k.pitch, 3500 * k.pitch
    f = lo * (hi / lo) ** (_t(m) / (m / SR))
    f = f if k.direction > 0 else f[::-1]
    tone = np.sin(_phase(f, m)) * np.hanning(m) ** 0.3
    return np.resize(tone, n)


def radio_static(n: int, k: Knobs, rng: Rng) -> np.ndarray:
    hiss = bandpass(rng.standard_normal(n), 300, 5000) * (0.6 + 0.4 * _smooth_noise(n, rng, 4.0))
    pops = [_burst(rng, 0.004, 500, 6000, 0.001)]
    return hiss + _scatter(n, _poisson(n, 10 + 30 * k.intensity, rng), pops, rng, 4.0)


def heartbeat(n: int, k: Knobs, rng: Rng) -> np.ndarray:
    lub = _ping(50, 0.15, 0.04) + 0.3 * _burst(rng, 0.15, 30, 200, 0.03)
    beat = np.concatenate([lub, np.zeros(int(0.12 * SR)), 0.7 * _ping(70, 0.15, 0.03)])
    return _scatter(n, _periodic(n, 1.0 / k.rate, rng, jitter=0.03, start=0.1), [beat], rng)


def impact(n: int, k: Knobs, rng: Rng) -> np.ndarray:
    thud = _ping(75 * k.pitch, 0.6, 0.1 + 0.2 * k.intensity) + _burst(rng, 0.6, 100, 2500, 0.01)
    count = max(1, int(n / SR / 2.0)) + int(rng.integers(0, 2))
    times = np.sort(rng.uniform(0.05, max(0.1, n / SR - 0.7), count))
    return _scatter(n, times, [thud], rng)


def explosion(n: int, k: Knobs, rng: Rng) -> np.ndarray:
    t = _t(n)
    boom = lowpass(highpass(np.cumsum(rng.standard_normal(n)), 20), 150)
    boom /= np.max(np.abs(boom)) + 1e-12
    blast = highpass(rng.standard_normal(n), 300) * np.exp(-t / 0.15)
    debris = _scatter(
        n,
        _poisson(n, 20 * k.intensity + 1, rng, start=0.2),
        [_burst(rng, 0.01, 1000, 6000, 0.002)],
        rng,
    )
    return (boom + blast) * np.exp(-t / (0.8 + 1.5 * k.intensity)) + 0.3 * debris * np.exp(-t / 2)


def gunshot(n: int, k: Knobs, rng: Rng) -> np.ndarray:
    shot = _burst(rng, 0.6, 500, 7000, 0.02) + _burst(rng, 0.6, 80, 1000, 0.08)
    shot += 0.2 * _burst(rng, 0.6, 200, 3000, 0.3)
    return _scatter(n, _periodic(n, 0.8 / k.rate, rng, jitter=0.3, start=0.1), [shot], rng)


def applause(n: int, k: Knobs, rng: Rng) -> np.ndarray:
    claps = [_burst(rng, 0.03, lo, lo * 3, 0.008) for lo in rng.uniform(600, 1200, 6)]
    times = _poisson(n, 15 + 250 * k.intensity, rng)
    swell = np.clip(np.minimum(_t(n) / 0.5, (n / SR - _t(n)) / 0.8), 0, 1)
    return _scatter(n, times, claps, rng, rng.uniform(0.3, 1.0, len(times))) * swell
