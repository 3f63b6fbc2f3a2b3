"""The report's sections on what the search learned: parameter importance (Optuna's evaluator on
every trial's value at a common rung, pruned trials included) with optuna.db, and what the
scheduler learned (factor effects per rung, the table at the epoch every configuration reached).
Files: importance.json/png, scheduler_rungs.md/csv, ablation_common_epoch.md/tex/csv."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from ablate.report import fidelity, plots, tables
from ablate.report import markup as h
from ablate.report.summary import Analysis
from ablate.results import uncell
from ablate.search import space

OPTUNA_FILE = "optuna.db"  # the Optuna study rebuilt from the table, for optuna-dashboard


def records(data: Analysis, epoch: int | None = None) -> list[space.Record]:
    """One Optuna trial per results-table trial: its sampled values, status, seed-mean curve.
    With `epoch`: only the trials that reached it, each completed with its value there."""
    out = []
    for name, trial in data.curves.items():
        params = {k: space.encode(uncell(trial["row"].get(k))) for k in data.params}
        curve, state = trial["curve"], trial["status"]
        if epoch is not None and (state == "failed" or epoch not in curve):
            continue
        if epoch is not None:
            value, state = curve[epoch], "completed"
        else:
            value = curve[max(curve)] if curve and state == "completed" else None
        attrs = {"trial_name": name, "trial_key": trial["key"]}
        out.append(space.Record(params, state, value, dict(curve), attrs))
    return out


def importance_section(data: Analysis, out: Path, evaluator: str) -> str:
    recs = records(data)
    observed = {k: [r.params[k] for r in recs] for k in data.params}
    dists = space.fit_distributions(data.info.distributions, observed)
    storage = f"sqlite:///{data.info.folder / OPTUNA_FILE}"
    space.build_study(recs, dists, data.info.goal, storage, data.info.name)
    learned, epoch = data.fidelity, data.fidelity.importance_epoch
    at = records(data, epoch) if epoch is not None else []
    varied = [k for k in data.params if len({json.dumps(r.params[k]) for r in at}) > 1]
    if len(at) < 2 or not varied:
        return h.note("Importance needs at least two trials at a common rung that differ in a "
                      "parameter.")  # fmt: skip
    try:
        scores = space.param_importances(space.build_study(at, dists, data.info.goal), evaluator)
    except Exception as err:  # an evaluator can refuse a degenerate study
        return h.note(f"Optuna could not compute importances: {type(err).__name__}: {err}")
    shown = {k: fidelity.status_of(learned, k, scores.get(k)) for k in data.params}
    payload = {"epoch": epoch, "trials": len(at), "evaluator": evaluator, "scores": scores,
               "not_estimable": learned.not_estimable}  # fmt: skip
    (out / "importance.json").write_text(json.dumps(payload, indent=1), encoding="utf-8")
    image = plots.importance_bars(scores, evaluator)
    (out / "importance.png").write_bytes(image)
    pruned = sum(1 for r in at if data.curves[r.attrs["trial_name"]]["status"] == "pruned")
    text = (
        f"Optuna's {evaluator} importance of each searched parameter for {data.info.metric} at "
        f"epoch {epoch} (a rung of the scheduler) over all {len(at)} trials that reached it "
        f"({pruned} of them pruned; normalised to sum 1). Few trials make these "
        "estimates rough; read them with the per-rung effects below."
    )
    rows = [[tables.factor_name(k), shown[k]] for k in data.params]
    return h.image(image, "parameter importance") + h.table(["parameter", "importance"], rows, 1) \
        + h.note(text)  # fmt: skip


def scheduler_section(data: Analysis, out: Path) -> str:
    learned = data.fidelity
    if not learned.rungs:
        return h.note(f"No rung to analyse: {learned.source}.")
    header = ["epoch", "trials", "stopped here", "factor", "eta²", "level means (trials)"]
    rows = rung_rows(learned)
    (out / "scheduler_rungs.md").write_text(_markdown(header, rows, learned), encoding="utf-8")
    (out / "scheduler_rungs.csv").write_text(_csv(learned), encoding="utf-8")
    parts = [h.note(f"Rungs: {learned.source}."), h.table(header, rows), h.note(_explain())]
    if learned.pruned_only:
        names = ", ".join(tables.factor_name(k) for k in learned.pruned_only)
        parts.append(h.note(f"Varies only among pruned trials: {names}. The completed trials "
                            "cannot rank it; the rung figures above do."))  # fmt: skip
    return "".join(parts) + _common_table(data, out)


def rung_rows(learned: fidelity.Fidelity) -> list[list[str]]:
    rows = []
    for rung in learned.rungs:
        for f in rung.factors or [fidelity.FactorAtRung("—", [], math.nan)]:
            share = "one level" if math.isnan(f.share) else f"{f.share:.2f}"
            levels = ", ".join(f"{lv}: {m:.2f} ({n})" for lv, m, n in f.levels)
            name = tables.factor_name(f.factor)
            rows.append([str(rung.epoch), str(rung.trials), str(rung.stopped), name, share, levels])
    return rows


def _explain() -> str:
    return (
        "At each rung every trial that reached it enters with its seed-mean value at that epoch. "
        "eta² is the share of the variance between those trials that the factor alone explains "
        "(main effect; factors searched together overlap, so shares need not sum to 1; numbers "
        f"with more than {fidelity.MAX_LEVELS} values are split into {fidelity.BINS} quantile "
        "bins). Level means compare trials at the same epoch, so pruned trials count."
    )


def _markdown(header: list[str], rows: list[list[str]], learned: fidelity.Fidelity) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(lines) + f"\n\nRungs: {learned.source}. {_explain()}\n"


def _csv(learned: fidelity.Fidelity) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["epoch", "trials", "stopped", "factor", "eta2", "level", "mean", "n"])
    for rung in learned.rungs:
        for f in rung.factors:
            share = "" if math.isnan(f.share) else f.share
            for level, mean, n in f.levels:
                writer.writerow([rung.epoch, rung.trials, rung.stopped, f.factor, share, level,
                                 mean, n])  # fmt: skip
    return buffer.getvalue()


def _common_table(data: Analysis, out: Path) -> str:
    table = data.common
    if table is None or not table.configs:
        return h.note("No trial was pruned: the ablation table above holds every configuration.")
    name = "ablation_common_epoch"
    (out / f"{name}.md").write_text(tables.to_markdown(table), encoding="utf-8")
    label = f"{data.info.name}_common"
    (out / f"{name}.tex").write_text(tables.to_latex(table, label), encoding="utf-8")
    (out / f"{name}.csv").write_text(tables.to_csv(table), encoding="utf-8")
    body = tables.body_rows(table)
    html = h.table(tables.header_cells(table), body, 1 + len(table.factors), highlight_first=True)
    head = h.heading(f"Every configuration {table.at}")
    notes = "".join(h.note(n) for n in [tables.caption(table), *table.notes()])
    return head + html + notes + h.note(f"Files: {name}.md, {name}.tex, {name}.csv.")
