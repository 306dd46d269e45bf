"""Frozen prediction results (:class:`Curves`) and their export to CSV and NPZ + JSON sidecar."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import _checks, _solvers, theory
from .files import (  # files are written in simtheory.files; re-exported here for older imports
    atomic_write_bytes as atomic_write_bytes,
    atomic_write_text as atomic_write_text,
    provenance as provenance,
)
from .task import SIMTask


def frozen(a, *, copy: bool = True) -> np.ndarray:
    """A read-only float64 array: a copy of ``a``, or ``a`` itself with ``copy=False`` (for arrays just
    computed here, which nobody else holds: copying them was a third of ``predict``'s cost)."""
    a = np.array(a, dtype=np.float64, copy=True if copy else None)
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class Curves:
    """Predicted (or simulated) learning curves of one setting or a batch of settings.

    Attributes
    ----------
    times : (T,) gradient-flow time (lr x steps) unless ``convention`` says otherwise
    W : (*batch, T, d, d) input-output map
    ood_output : (*batch, T, d) ``W x_OOD``
    ood_loss, train_loss : (*batch, T)
    convention, model : how the curves were computed
    task : the :class:`SIMTask`
    latex : LaTeX of the expressions used, keyed ``derivation.formula``
    meta : free-form provenance (JSON-serialisable)
    composition_outputs : (*batch, T, 2^s, d) model outputs at every composition x(v), in the
        order of ``task.compositions()`` (for input-linear models ``W x(v)``)
    """

    times: np.ndarray
    W: np.ndarray
    ood_output: np.ndarray
    ood_loss: np.ndarray
    train_loss: np.ndarray
    convention: str
    model: str
    task: SIMTask
    latex: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    composition_outputs: np.ndarray | None = None

    @classmethod
    def from_W(
        cls,
        task: SIMTask,
        times,
        W,
        *,
        model: str,
        convention: str = "gradient-flow",
        latex: dict | None = None,
        meta: dict | None = None,
        _owned: bool = False,
    ) -> "Curves":
        """Build curves from a trajectory ``W`` of shape (*batch, T, d, d) on ``task`` (``W`` is copied;
        ``_owned=True``, for the package's predictors, takes a ``W`` that nothing else holds)."""
        if not isinstance(task, SIMTask):
            raise ValueError(f"task must be a SIMTask, got {type(task).__name__}")
        times = _checks.times(times, "times")
        W = _checks.square_batch(W, "W", task.d)
        if W.ndim < 3 or W.shape[-3] != times.size:
            raise ValueError(f"W must have shape (*batch, len(times) = {times.size}, d, d), got {W.shape}")
        fresh = lambda a: frozen(a, copy=False)
        ood = theory.ood_output(task, W)
        return cls(
            times=frozen(times),
            W=frozen(W, copy=not _owned),
            ood_output=fresh(ood),
            ood_loss=fresh(theory.identity_loss(ood, task.test_point())),
            train_loss=fresh(theory.train_loss(task, W)),  # the task's own loss, whatever the convention
            convention=convention,
            model=model,
            task=task,
            latex=dict(latex or {}),
            meta=dict(meta or {}),
            composition_outputs=fresh(theory.ood_output(task, W, task.compositions())),
        )

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return self.W.shape[:-3]

    def select(self, index) -> "Curves":
        """The curves of one setting (or a sub-batch): ``index`` indexes the batch axes."""
        if not self.batch_shape:
            raise ValueError("these curves have no batch axis to select from")
        try:
            np.empty(self.batch_shape, dtype=bool)[index]
        except (IndexError, TypeError, ValueError) as exc:
            raise ValueError(
                f"index {index!r} does not index the batch shape {self.batch_shape}: {exc}"
            ) from None
        pick = lambda a: None if a is None else frozen(np.asarray(a)[index])
        return Curves(
            times=self.times,
            W=pick(self.W),
            ood_output=pick(self.ood_output),
            ood_loss=pick(self.ood_loss),
            train_loss=pick(self.train_loss),
            convention=self.convention,
            model=self.model,
            task=self.task,
            latex=dict(self.latex),
            meta=dict(self.meta),
            composition_outputs=pick(self.composition_outputs),
        )

    def composition_losses(self) -> np.ndarray:
        """``1/2 ||f(x(v)) - x(v)||^2`` for every composition v, shape (*batch, T, 2^s), from the
        recorded model outputs (exact for nonlinear models too)."""
        if self.composition_outputs is None:
            return theory.ood_loss(self.task, self.W, self.task.compositions())
        return theory.identity_loss(self.composition_outputs, self.task.test_points())

    def learning_times(self, level: float = 0.9) -> np.ndarray:
        """``(E, s)``: the first recorded time at which each concept's output at its own training point
        ``mu_p e_p`` reaches ``level x mu_p`` (``inf`` if never), per member of a 1-d batch (each member's own
        ``mu`` from ``meta["tasks"]`` where the members had different tasks)."""
        from .measures import first_crossing

        if len(self.batch_shape) != 1:
            raise ValueError(
                f"learning_times needs curves with one batch axis; these have batch shape {self.batch_shape}"
            )
        task = self.task
        comps = task.compositions()
        tasks = self.meta.get("tasks") or [task.to_dict()] * self.batch_shape[0]
        out = []
        for p in range(task.s):
            onehot = int(np.flatnonzero((comps.sum(1) == 1) & (comps[:, p] == 1))[0])
            mu_p = np.array([t["mu"][p] for t in tasks])
            out.append(first_crossing(self.times, self.composition_outputs[:, :, onehot, p], level * mu_p))
        return np.stack(out, axis=1)

    def loss_at(self, v) -> np.ndarray:
        """Loss at composition(s) ``v`` (0/1 of length s, or (m, s)) over time: read from
        :meth:`composition_losses`, so the two agree for every model (for a network such as the ReLU MLP ``W``
        is its Jacobian at the OOD point, not an input-output map); from ``W`` where no outputs were
        recorded."""
        if self.composition_outputs is None:
            return theory.ood_loss(self.task, self.W, v)
        v_arr = np.asarray(v, dtype=np.float64)
        comps = self.task.compositions()
        theory.ood_points(self.task, v_arr)  # the test points' own check: v binary, of length s
        rows = v_arr.reshape(-1, comps.shape[1])
        idx = np.array([int(np.flatnonzero((comps == r).all(axis=1))[0]) for r in rows])
        losses = self.composition_losses()[..., idx]
        return losses[..., 0] if v_arr.ndim == 1 else losses

    # -- export -------------------------------------------------------------------------------
    def to_csv(self, path) -> Path:
        """One row per (setting, time): losses, OOD output and every entry of W (full precision)."""
        quantities = self._quantities()
        values = np.stack([arr for _, arr in quantities], axis=-1)  # (settings, T, quantities)
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["setting", "t"] + [name for name, _ in quantities])
        for b in range(values.shape[0]):
            for k, tk in enumerate(self.times):
                writer.writerow([b, repr(float(tk))] + [repr(float(x)) for x in values[b, k]])
        return atomic_write_text(path, buf.getvalue())

    def _quantities(self):
        """(name, array (settings, T)) for every scalar quantity over time."""
        d = self.task.d
        T = self.times.size
        out = [("train_loss", self.train_loss.reshape(-1, T)), ("ood_loss", self.ood_loss.reshape(-1, T))]
        out += [(f"ood_output_{k + 1}", self.ood_output.reshape(-1, T, d)[..., k]) for k in range(d)]
        W = self.W.reshape(-1, T, d, d)
        out += [(f"w_{i + 1}{j + 1}", W[..., i, j]) for i in range(d) for j in range(d)]
        return out

    def to_tidy_csv(self, path) -> Path:
        """Tidy (long) CSV: one row per (setting, time, quantity) with columns setting, t, quantity, value."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["setting", "t", "quantity", "value"])
        for name, arr in self._quantities():
            for b in range(arr.shape[0]):
                for k, tk in enumerate(self.times):
                    writer.writerow([b, repr(float(tk)), name, repr(float(arr[b, k]))])
        return atomic_write_text(path, buf.getvalue())

    def _batch_dims(self) -> list[str]:
        n = len(self.batch_shape)
        return ["setting"] if n == 1 else [f"setting_{k}" for k in range(n)]

    def to_pandas(self):
        """Tidy ``pandas.DataFrame`` (pandas is optional, imported here): one row per (setting, time,
        quantity) with columns ``setting`` (one ``setting_k`` per batch axis; none without a batch), ``t``,
        ``quantity`` (``train_loss``, ``ood_loss``, ``ood_output_k``, ``w_ij``) and ``value``."""
        import pandas as pd

        quantities = self._quantities()
        values = np.stack([arr for _, arr in quantities])  # (Q, S, T)
        Q, S, T = values.shape
        q, b, k = (a.ravel() for a in np.meshgrid(np.arange(Q), np.arange(S), np.arange(T), indexing="ij"))
        cols = {}
        if self.batch_shape:
            for name, idx in zip(self._batch_dims(), np.unravel_index(b, self.batch_shape)):
                cols[name] = idx
        cols["t"] = self.times[k]
        cols["quantity"] = pd.Categorical.from_codes(q, [name for name, _ in quantities])
        cols["value"] = values.ravel()
        return pd.DataFrame(cols)

    def to_xarray(self):
        """An ``xarray.Dataset`` (xarray is optional, imported here) with named dimensions: the batch
        axes (``setting`` or ``setting_k``), ``time``, ``i``, ``j`` (1-based entries of W), ``composition``
        (with the 0/1 vectors as coordinate ``composition_v``); attributes hold the task, conventions, LaTeX,
        meta and provenance as JSON. Round-trips through netCDF:
        ``Curves.from_xarray(xr.open_dataset(path))``."""
        import xarray as xr

        b = self._batch_dims()
        d, s = self.task.d, self.task.s
        data = {
            "W": (b + ["time", "i", "j"], self.W),
            "ood_output": (b + ["time", "i"], self.ood_output),
            "ood_loss": (b + ["time"], self.ood_loss),
            "train_loss": (b + ["time"], self.train_loss),
        }
        coords = {"time": self.times, "i": np.arange(1, d + 1), "j": np.arange(1, d + 1)}
        if self.composition_outputs is not None:
            data["composition_outputs"] = (b + ["time", "composition", "i"], self.composition_outputs)
            coords["composition"] = np.arange(2**s)
            coords["concept"] = np.arange(1, s + 1)
            coords["composition_v"] = (("composition", "concept"), self.task.compositions().astype(np.int32))
        side = self.sidecar()
        attrs = {"simtheory_curves": 1, "model": self.model, "convention": self.convention}
        attrs["time_unit"] = side["time_unit"]
        attrs.update({k: json.dumps(side[k]) for k in ("task", "latex", "meta", "provenance")})
        return xr.Dataset(data, coords=coords, attrs=attrs)

    @classmethod
    def from_xarray(cls, ds) -> "Curves":
        """The curves of a Dataset written by :meth:`to_xarray` (for example read back from netCDF), checked
        as :meth:`load` checks a file."""
        attrs = dict(getattr(ds, "attrs", {}))
        if not attrs.get("simtheory_curves"):
            raise ValueError(
                "ds is not a Dataset written by Curves.to_xarray (no simtheory_curves attribute)"
            )
        side = {k: attrs[k] for k in ("model", "convention") if k in attrs}
        for k in ("task", "latex", "meta"):
            if k in attrs:
                try:
                    side[k] = json.loads(attrs[k])
                except (TypeError, json.JSONDecodeError):
                    raise ValueError(f"ds attribute {k!r} is not JSON") from None
        tail = {
            "times": None,
            "W": ("time", "i", "j"),
            "ood_output": ("time", "i"),
            "ood_loss": ("time",),
            "train_loss": ("time",),
            "composition_outputs": ("time", "composition", "i"),
        }
        arrays = {"times": np.asarray(ds["time"].values)} if "time" in ds.coords else {}
        for name, dims in tail.items():
            if dims is None or name not in ds.data_vars:
                continue
            var = ds[name]
            if tuple(var.dims[len(var.dims) - len(dims) :]) != dims:
                raise ValueError(f"ds[{name!r}] must end in dimensions {dims}, got {var.dims}")
            arrays[name] = np.asarray(var.values)
        return cls._checked(arrays, side, "ds", "ds.attrs")

    def to_dat(self, path) -> Path:
        """pgfplots-ready table (whitespace separated, header row; ``\\addplot table[x=t, y=ood_loss]``).

        With a batch of settings every column but ``t`` gets the suffix ``_s<index>``."""
        quantities = self._quantities()
        n = quantities[0][1].shape[0]
        cols = ["t"] + [name if n == 1 else f"{name}_s{b}" for name, arr in quantities for b in range(n)]
        data = [self.times] + [arr[b] for _, arr in quantities for b in range(n)]
        lines = [" ".join(cols)]
        for k in range(self.times.size):
            lines.append(" ".join(f"{float(col[k]):.17g}" for col in data))
        return atomic_write_text(path, "\n".join(lines) + "\n")

    def sidecar(self) -> dict:
        return {
            "model": self.model,
            "convention": self.convention,
            "time_unit": "gradient-flow time (lr x steps)"
            if self.convention == "gradient-flow"
            else "paper time (dW/dt = V), half the gradient-flow speed",
            "task": self.task.to_dict(),
            "batch_shape": list(self.batch_shape),
            "latex": self.latex,
            "meta": self.meta,
            "provenance": provenance(),
        }

    def to_npz(self, path) -> tuple[Path, Path]:
        """Float64 arrays in ``path`` (.npz) and a JSON sidecar next to it (same stem, .json)."""
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(".npz")
        buf = io.BytesIO()
        extra = {} if self.composition_outputs is None else {"composition_outputs": self.composition_outputs}
        np.savez(
            buf,
            times=self.times,
            W=self.W,
            ood_output=self.ood_output,
            ood_loss=self.ood_loss,
            train_loss=self.train_loss,
            **extra,
        )
        data = buf.getvalue()
        # one unit: the sidecar holds the arrays' hash, so a kill between the two renames (new arrays, old
        # sidecar, or the reverse) is refused by load instead of pairing arrays with the wrong task
        meta = {**self.sidecar(), "arrays_sha256": hashlib.sha256(data).hexdigest()}
        atomic_write_bytes(path, data)
        side = atomic_write_text(path.with_suffix(".json"), json.dumps(meta, indent=2))
        return path, side

    @classmethod
    def load(cls, path) -> "Curves":
        """Read curves written by :meth:`to_npz` (no pickles: ``allow_pickle=False``).

        Everything is checked before a ``Curves`` is returned: the pair belongs together (the sidecar's
        hash of the arrays), the arrays have the shapes of one set of curves on the sidecar's task, and
        every value is finite; a file that fails names itself in a ``ValueError``."""
        path = Path(path)
        side_path = path.with_suffix(".json")
        for f in (path, side_path):
            if not f.is_file():
                raise ValueError(f"{f}: no such file (Curves.load needs the .npz and its .json sidecar)")
        data = path.read_bytes()
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except Exception as exc:  # zipfile, numpy and pickle errors alike: a file that is not ours
            raise ValueError(
                f"{path}: not a curves .npz written by Curves.to_npz ({type(exc).__name__})"
            ) from None
        try:
            side = json.loads(side_path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{side_path}: not a JSON sidecar ({exc})") from None
        if not isinstance(side, dict):
            raise ValueError(f"{side_path}: not a JSON sidecar (expected an object)")
        want = side.get("arrays_sha256")
        if want is not None and want != hashlib.sha256(data).hexdigest():
            raise ValueError(
                f"{side_path} does not belong to {path} (hash mismatch: a torn or mixed write); "
                "rewrite the pair"
            )
        return cls._checked(arrays, side, path, side_path)

    @classmethod
    def _checked(cls, arrays: dict, side: dict, path, side_path) -> "Curves":
        """Curves from arrays and a sidecar record, every shape and value checked first (``path`` and
        ``side_path`` name the sources in errors)."""
        missing = [k for k in ("times", "W", "ood_output", "ood_loss", "train_loss") if k not in arrays]
        if missing:
            raise ValueError(f"{path}: missing the arrays {', '.join(missing)}")
        missing = [k for k in ("convention", "model", "task") if k not in side]
        if missing:
            raise ValueError(f"{side_path}: the sidecar misses {', '.join(missing)}")
        if not isinstance(side["task"], dict):
            raise ValueError(f"{side_path}: bad task record (expected an object)")
        try:
            task = SIMTask.from_dict(side["task"])
        except ValueError as exc:
            raise ValueError(f"{side_path}: bad task record ({exc})") from None
        for k, a in arrays.items():
            if a.dtype.kind not in "fiu" or not np.all(np.isfinite(a)):
                raise ValueError(f"{path}: array {k} must be finite real numbers")
        t, W = arrays["times"], arrays["W"]
        if t.ndim != 1 or t.size == 0 or np.any(np.diff(t) < 0):
            raise ValueError(
                f"{path}: times must be a non-empty, non-decreasing 1-d array, got shape {t.shape}"
            )
        if W.ndim < 3 or W.shape[-3:] != (t.size, task.d, task.d):
            raise ValueError(
                f"{path}: W must have shape (*batch, {t.size}, {task.d}, {task.d}) for {t.size} times on the "
                f"sidecar's task (d = {task.d}), got {W.shape}"
            )
        batch = W.shape[:-3]
        shapes = {
            "ood_output": batch + (t.size, task.d),
            "ood_loss": batch + (t.size,),
            "train_loss": batch + (t.size,),
            "composition_outputs": batch + (t.size, 2**task.s, task.d),
        }
        for k, shape in shapes.items():
            if k in arrays and arrays[k].shape != shape:
                raise ValueError(f"{path}: {k} must have shape {shape}, got {arrays[k].shape}")
        return cls(
            times=frozen(t),
            W=frozen(W),
            ood_output=frozen(arrays["ood_output"]),
            ood_loss=frozen(arrays["ood_loss"]),
            train_loss=frozen(arrays["train_loss"]),
            convention=str(side["convention"]),
            model=str(side["model"]),
            task=task,
            latex=side.get("latex", {}),
            meta=side.get("meta", {}),
            composition_outputs=frozen(arrays["composition_outputs"])
            if "composition_outputs" in arrays
            else None,
        )


def predict(
    task: SIMTask, W0, t, model: str = "symmetric", convention: str = "gradient-flow", **kwargs
) -> Curves:
    """Predicted :class:`Curves` of ``model`` on ``task`` from ``W0`` over times ``t``.

    ``model``: any predictable entry of the model registry (:mod:`simtheory.models`): "linear" (alias
    "linear-flow"), "symmetric" (``convention`` applies), "untied" (``W0`` is then a pair ``(W1_0, W2_0)``) or
    "deep" (``W0`` a list of factor matrices, first layer first). ``kwargs`` go to the solver (``rtol``,
    ``atol``, ``method``) where the flow is integrated numerically. Discrete GD of the one-layer model is
    :func:`simtheory.linear_gd` (it takes steps, not times).
    """
    from . import models

    spec = models.get(model)
    if not spec.predictable:
        raise ValueError(
            f"model {model!r} has no gradient-flow prediction; predictable models: "
            f"{models.names(predictable=True)}"
        )
    if convention not in spec.conventions:
        raise ValueError(
            f"convention must be one of {spec.conventions} for the {spec.name} model "
            f"(the paper's conventions apply to the symmetric model only); got {convention!r}"
        )
    t = _checks.times(t)
    if t.size > 1 and np.any(np.diff(t) <= 0):  # curves are time series (the predictors take any order)
        k = int(np.flatnonzero(np.diff(t) <= 0)[0])
        raise ValueError(
            f"t must be sorted and unique for curves, got t[{k}] = {float(t[k])!r} then {float(t[k + 1])!r}"
        )
    with _solvers.solver_log() as log:
        W = spec.flow(task, W0, t, convention=convention, **kwargs)
    W = _flow_output(spec, W, t, task.d)
    latex = dict(compiled_latex(d, f, keyed=True) for d, f in spec.formulas)
    # the built-in flows return a fresh array (a user's flow might keep its own): no second copy of it
    owned = spec.name in ("linear", "symmetric", "untied", "deep") and isinstance(W, np.ndarray)
    owned = owned and W.flags.owndata and W.dtype == np.float64
    curves = Curves.from_W(task, t, W, model=model, convention=convention, latex=latex, _owned=owned)
    curves.meta["solver"] = [s.as_dict() for s in log]  # how the flow was evaluated, and what it cost
    if spec.penalty_of_W is not None:  # the model's own loss: data term plus its penalty
        extra = np.asarray(spec.penalty_of_W(curves.W), dtype=np.float64)
        if extra.shape != curves.train_loss.shape:
            raise ValueError(
                f"the {spec.name} model's penalty_of_W must map W {curves.W.shape} to shape "
                f"{curves.train_loss.shape}, got {extra.shape}"
            )
        meta = {**curves.meta, "train_loss": "data term + the model's penalty_of_W"}
        curves = dataclasses.replace(
            curves, train_loss=frozen(curves.train_loss + extra, copy=False), meta=meta
        )
    return curves


def _flow_output(spec, W, t, d: int) -> np.ndarray:
    """The flow's W(t), checked once: ``(*batch, len(t), d, d)``, else an error naming the model's flow."""
    W = np.asarray(W, dtype=np.float64)
    if W.ndim < 3 or W.shape[-3:] != (t.size, d, d):
        raise ValueError(
            f"the {spec.name} model's flow returned shape {W.shape}; it must return W(t) of shape "
            f"(*batch, len(t) = {t.size}, d = {d}, d = {d})"
        )
    return W


def compiled_latex(derivation, formula: str, *, keyed: bool = False):
    """LaTeX of ``formula`` of ``derivation`` (a name in the ``derivations`` package, or a user's
    :class:`~simtheory.symbolic.Derivation` object); ``keyed``: the pair ``("derivation.formula", latex)``."""
    if isinstance(derivation, str):
        from simtheory import derivations

        derivation = derivations.get(derivation)
    text = derivation.formulas[formula].latex()
    return (f"{derivation.name}.{formula}", text) if keyed else text


# -- provenance and atomic writes -------------------------------------------------------------
