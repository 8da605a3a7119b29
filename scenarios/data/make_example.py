"""Write the synthetic ankle's trials as OpenSim / CEINMS / C3D files for ``impbench calibrate``.

``python scenarios/data/make_example.py [OUT_DIR]`` (default ``scenarios/data/example``)
simulates :class:`plants.ankle.AnklePlant` (000 Sec. 2.2-2.5: 7 MTUs, 5 EMG channels,
perturbed sinusoidal tracking) and writes what a user would bring:

* ``trial1_*``: OpenSim files (IK ``.mot`` in degrees, ID ``.sto``, MuscleAnalysis
  ``_Length.sto`` and ``_MomentArm_ankle_angle.sto``, processed EMG ``.sto``, stiffness
  ``.sto``), legacy (version 1) headers;
* ``trial2_*``: CEINMS tables (``_torque.txt``, ``_lmt.txt``, ``_ma_ankle_angle.txt``,
  ``_emg.txt``, ``_stiffness.txt``; angles as a version-3 ``.mot``);
* with ``raw_emg``: ``trial1_emg.c3d`` raw EMG at 1024 Hz (excitation-modulated band-limited
  noise, as the plant synthesizes its own) and ``mvc.c3d``, an MVC trial;
* ``initial.yaml``: generic parameters off the truth (strength x0.8 / x1.2 alternating,
  optimal fibre and tendon slack lengths +-3 %, shape factors -0.3) - what is calibrated;
* ``truth.yaml``: the true parameters of the synthetic subject.

The stiffness files hold the true joint stiffness K_J (000:Eq.7), the ideal reference.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import yaml
from scipy import signal

from bench.formats.trial import write_trial
from plants.ankle import AnklePlant, default_ankle_params

__all__ = ["make_example", "perturbed_initial", "synthesize_raw_emg"]

PLANT = {"n_cycles": 3, "n_trials": 2, "tendon": "rigid", "perturbed": True}
RAW_RATE = 1024.0


def perturbed_initial(fs: float) -> dict[str, np.ndarray]:
    """Generic parameters off the truth, deterministically (see the module docstring)."""
    p = {k: np.asarray(v, dtype=float) for k, v in default_ankle_params(fs)._asdict().items()}
    M = p["f_max"].size
    sign = np.where(np.arange(M) % 2 == 0, 1.0, -1.0)
    p["f_max"] = p["f_max"] * (1.0 - 0.2 * sign)
    p["l_opt"] = p["l_opt"] * (1.0 + 0.03 * sign)
    p["l_ts"] = p["l_ts"] * (1.0 - 0.03 * sign)
    p["shape"] = np.clip(p["shape"] - 0.3, -2.9, -0.1)
    return p


def _params_yaml(params: dict, muscles: list[str], fs: float) -> str:
    mtus = {m: {k: float(np.asarray(v)[i]) for k, v in params.items()}
            for i, m in enumerate(muscles)}
    return yaml.safe_dump({"fs": float(fs), "mtus": mtus}, sort_keys=False)


def synthesize_raw_emg(excitation: np.ndarray, fs: float, rate: float,
                       rng: np.random.Generator, noise: float = 0.02) -> np.ndarray:
    """Raw EMG (T_raw, C) at ``rate``: excitation (T, C) at ``fs`` linearly interpolated
    (held after the last sample), times unit-variance 20-450 Hz band-limited noise, plus white
    sensor noise; it starts at the first excitation sample and covers the last one."""
    T, C = excitation.shape
    n = int(np.ceil((T - 1) / fs * rate)) + 32  # past the last sample (whole C3D frames)
    t_raw = np.arange(n) / rate
    e = np.stack([np.interp(t_raw, np.arange(T) / fs, excitation[:, c]) for c in range(C)], 1)
    b, a = signal.butter(4, [20 / (rate / 2), 450 / (rate / 2)], btype="band")
    carrier = signal.lfilter(b, a, rng.standard_normal((n + 1024, C)), axis=0)[1024:]
    carrier /= np.std(carrier, axis=0, keepdims=True)
    return e * carrier + noise * rng.standard_normal((n, C))


def _write_c3d(path: Path, raw: np.ndarray, labels: list[str], rate: float) -> None:
    import c3d

    per_frame = 8
    frames = raw.shape[0] // per_frame
    w = c3d.Writer(point_rate=rate / per_frame, analog_rate=rate)
    data = raw[: frames * per_frame].T.astype(np.float32)
    for f in range(frames):
        w.add_frames([(np.zeros((0, 5), np.float32),
                       data[:, f * per_frame:(f + 1) * per_frame])])
    w.set_analog_labels(labels)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        w.write(fh)
    tmp.replace(path)


def make_example(out: str | Path, *, seed: int = 0, raw_emg: bool = True,
                 plant: dict | None = None) -> dict:
    """Simulate the ankle and write the example dataset into ``out``.

    Returns
    -------
    dict
        ``data`` (the in-memory :class:`~bench.types.MuscleData`, with ``meta["time"]``),
        ``trials`` (role -> path dicts of trial1 and trial2), ``initial`` (the perturbed
        generic parameters, field -> (M,)), ``raw`` (raw EMG array or None) and paths.
    """
    import warnings

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    data = AnklePlant(**{**PLANT, **(plant or {})}).simulate(rng)
    T = data.torque.shape[1]
    data.meta["time"] = np.arange(T) / data.fs
    trials = {
        "trial1": write_trial(data, out, trial=0, prefix="trial1", fmt="opensim", version=1),
        "trial2": write_trial(data, out, trial=1, prefix="trial2", fmt="ceinms", version=3),
    }
    muscles = list(data.muscles)
    initial = perturbed_initial(data.fs)
    (out / "initial.yaml").write_text(_params_yaml(initial, muscles, data.fs))
    truth = {k: np.asarray(v) for k, v in data.truth["params"].items()}
    (out / "truth.yaml").write_text(_params_yaml(truth, muscles, data.fs))
    raw = None
    if raw_emg:
        raw = synthesize_raw_emg(data.excitation[0], data.fs, RAW_RATE, rng)
        mvc = synthesize_raw_emg(np.ones((int(3 * data.fs), raw.shape[1])), data.fs,
                                 RAW_RATE, rng)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _write_c3d(out / "trial1_emg.c3d", raw, list(data.channels), RAW_RATE)
            _write_c3d(out / "mvc.c3d", mvc, list(data.channels), RAW_RATE)
    return {"data": data, "trials": trials, "initial": initial, "raw": raw, "dir": out}


def main(argv: list[str] | None = None) -> int:
    """Command line: ``make_example.py [OUT_DIR] [--seed N] [--no-raw-emg]``."""
    import argparse

    ap = argparse.ArgumentParser(description="Write the synthetic ankle's trials as OpenSim / "
                                             "CEINMS / C3D files (the calibration example's "
                                             "data).")
    ap.add_argument("out", nargs="?", default=str(Path(__file__).parent / "example"),
                    help="output folder (default: scenarios/data/example)")
    ap.add_argument("--seed", type=int, default=0, help="simulation seed (default 0)")
    ap.add_argument("--no-raw-emg", action="store_true",
                    help="skip the raw EMG and MVC trials (C3D)")
    args = ap.parse_args(argv)
    res = make_example(Path(args.out), seed=args.seed, raw_emg=not args.no_raw_emg)
    print(f"wrote the example dataset into {args.out} "
          f"({res['data'].torque.shape[1]} samples x 2 trials at {res['data'].fs} Hz)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
