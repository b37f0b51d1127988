"""tfsal's methods and its peers' equivalents, as ratios to the forward+backward floor.

    .venv/bin/python benchmarks/bench_methods.py [--models resnet50,vgg16,embedded] [--repeats 5]
                                                 [--peers tf-keras-vis,xplique,saliency,tf-explain]
                                                 [--out part.md] [--quick]

Per model, every library is handed the same flat Keras model from pixels in [0, 1] to logits
(`_models.pixel_logits`: preprocessing inside, no softmax), the same image and the same integer
target. The floor is a plain compiled `GradientTape` input gradient of that model, with nothing
of any library in it, at batch 1 and batched (per-image cost). Timed in the same process:
every tfsal method and each peer's vanilla gradient, SmoothGrad, Integrated Gradients,
Grad-CAM and Guided Backprop where it has one — medians of interleaved rounds (all candidates
run once per round, so drift hits them alike) after a first call, whose cost (explainer
construction + trace) is reported apart, as is the first call after a change of target class.
Then each peer's numbers against tfsal's after matching conventions (`_peers.py` says how) and
the Integrated Gradients completeness error of every implementation.
`--peers none` times tfsal alone. Not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
from _models import PREPROCESS, build, pixel_logits  # noqa: E402,F401  (build: bench_nonlinear)
from _peers import METHODS, PEERS, Impl, load_peers, short_error  # noqa: E402
from _timing import floor_fn as _floor_fn  # noqa: E402
from _timing import (  # noqa: E402,F401  (report: used by the other parts)
    forward_fn,
    interleaved,
    layer_floor_fn,
    noisy_floor_fn,
    report,
    timed,
)

import tfsal  # noqa: E402

N_PATH = 50  # SmoothGrad samples and IG steps
NOISE = 0.15  # SmoothGrad σ as a fraction of the image's range
PATH_MODELS = ("resnet50", "embedded")  # VGG16's 50-sample runs would double the harness time
# Batch sizes tried for the per-image floor (on these 2 cores the cheapest ones; more sizes
# cost tens of seconds of VGG16 gradients per round).
FLOOR_BATCHES = {"resnet50": (16, 32), "vgg16": (16,), "embedded": (8, 32)}
PATH = ("smoothgrad", "integrated_gradients")
ONCE_SECONDS = 25.0  # a candidate whose first call took longer is timed in one round only
SLOW_ROUNDS = 3  # rounds for the seconds-long SmoothGrad / IG calls (the others: --repeats)
MIN_ROUND = 0.5  # a fast candidate repeats within a round until the round lasts this long
TFSAL_ONLY = ("gradient_x_input", "rectgrad")
COMPARED = ("vanilla_gradient", "integrated_gradients", "grad_cam", "guided_backprop")
RECTGRAD = dict(percentile=98, padding_trick=True, prr=True)
TARGETS = {"vanilla_gradient": 1.05, "gradient_x_input": 1.05, "grad_cam": 0.5,
           "guided_backprop": 1.05, "rectgrad": 1.5, "smoothgrad": 1.00,
           "integrated_gradients": 1.00}
LABEL = {"vanilla_gradient": "vanilla gradient", "gradient_x_input": "gradient × input",
         "smoothgrad": "SmoothGrad", "integrated_gradients": "IG", "grad_cam": "Grad-CAM",
         "guided_backprop": "Guided Backprop", "rectgrad": "RectGrad (q=98, padding trick, PRR)"}
RULES = {"tfsal": "Gauss–Legendre", "xplique": "trapezoid on linspace",
         "saliency": "linspace, weights 1/n", "tf-explain": "linspace, weights 1/n (× x)"}

warnings.filterwarnings("ignore", category=UserWarning)  # peers' Keras 3 structure warnings


def floor_fn(user, model: tfsal.Model):
    """The floor for a user model and its adapter (kept for bench_nonlinear)."""
    return _floor_fn(user, model._preprocess, model.input_size)


def tfsal_impls(model: tfsal.Model, n_path: int) -> dict[str, Impl]:
    return {
        "vanilla_gradient": Impl(lambda x, t: tfsal.vanilla_gradient(model, x, t)),
        "gradient_x_input": Impl(lambda x, t: tfsal.gradient_x_input(model, x, t)),
        "smoothgrad": Impl(lambda x, t: tfsal.smoothgrad(model, x, t, n_samples=n_path,
                                                         noise_level=NOISE, seed=0)),
        "integrated_gradients": Impl(lambda x, t: tfsal.integrated_gradients(model, x, t,
                                                                             steps=n_path)),
        "grad_cam": Impl(lambda x, t: tfsal.grad_cam(model, x, t)),
        "guided_backprop": Impl(lambda x, t: tfsal.guided_backprop(model, x, t)),
        "rectgrad": Impl(lambda x, t: tfsal.rectgrad(model, x, t, **RECTGRAD)),
    }


def data(name: str, n: int, size: tuple[int, int]):
    """Held-out shapes images with their labels for the trained model; uniform noise and
    classes 0, 1, … for the untrained ImageNet architectures."""
    if name == "embedded":
        from tfsal.data import make_dataset

        ds = make_dataset(n, seed=2)
        return ds.images, ds.labels.astype(np.int32)
    images = np.random.default_rng(0).random((n, *size, 3), dtype=np.float32)
    return images, np.arange(n, dtype=np.int32) % 1000


def bench_model(name: str, repeats: int, quick: bool, peer_names) -> dict:
    user, _ = build(name)
    flat = pixel_logits(user, PREPROCESS[name])
    del user
    h, w = flat.input_shape[1:3]
    path = name in PATH_MODELS
    n_path = 8 if quick else N_PATH
    images, targets = data(name, 4 if quick else (16 if name == "embedded" else 2), (h, w))
    one, t0 = images[:1], int(targets[0])
    t1 = (t0 + 3) % flat.output_shape[-1]

    floor = _floor_fn(flat, target=t0)
    batches = (8,) if quick else FLOOR_BATCHES[name]
    guess = {b: (floor(np.repeat(one, b, axis=0)),  # trace / warm-up
                 timed(lambda b=b: floor(np.repeat(one, b, axis=0))) / b)[1] for b in batches}
    batch = min(guess, key=guess.get)  # tfsal's and the peers' batch size for this model
    model = tfsal.Model(flat, batch_size=batch)
    methods = [m for m in METHODS + TFSAL_ONLY if path or m not in PATH]
    setup = dict(n_path=n_path, noise_level=NOISE, layer=model.resolve_layer(None),
                 batch_size=batch)

    # First calls: tfsal on a fresh adapter per method (its trace); peers construct + call.
    libraries, first, failures = {"tfsal": {}}, {}, {}
    for method in methods:
        impl = tfsal_impls(tfsal.Model(flat, batch_size=batch), n_path)[method]
        first[("tfsal", method)] = timed(lambda impl=impl: impl.call(one, t0))
        libraries["tfsal"][method] = tfsal_impls(model, n_path)[method]
    peers = load_peers(flat, setup, peer_names)
    for peer in peers:
        libraries[peer.name] = {}
        for method in (m for m in methods if m in METHODS):
            impl = peer.impls.get(method)
            if impl is None:
                failures[(peer.name, method)] = peer.error or peer.missing.get(method, "—")
                continue
            try:
                first[(peer.name, method)] = impl.setup_seconds + timed(
                    lambda impl=impl: impl.call(one, t0))
                libraries[peer.name][method] = impl
            except Exception as exc:  # fails on its first call: a result, reported verbatim
                failures[(peer.name, method)] = short_error(exc)

    # Steady state, interleaved; the first calls above were the warm-up of the slow ones.
    candidates = {("floor", 1): lambda: floor(one)}
    for b in batches:
        candidates[("floor", b)] = lambda b=b: floor(np.repeat(one, b, axis=0))
    forward = forward_fn(flat)  # bounds Grad-CAM from below
    candidates[("forward", 1)] = lambda: forward(one)
    layer_floor = layer_floor_fn(flat, setup["layer"], t0)  # Grad-CAM without any library
    candidates[("layer floor", 1)] = lambda: layer_floor(one)
    if path:  # SmoothGrad's noise draws alone, made as tfsal makes them
        candidates[("noise", n_path)] = lambda: [
            np.random.default_rng([0, j]).standard_normal(one.shape[1:], np.float32)
            for j in range(n_path)]
        # the floor on SmoothGrad's and IG's batches (n_path pairs, `batch` at a time) ...
        sizes = [min(batch, n_path - start) for start in range(0, n_path, batch)]
        candidates[("batches", n_path)] = lambda: [floor(np.repeat(one, size, axis=0))
                                                   for size in sizes]
        # ... and on noisy copies, the noise drawn as tfsal draws it: SmoothGrad's bound
        noisy_floor = noisy_floor_fn(floor, n_path, batch, NOISE)
        candidates[("noisy floor", n_path)] = lambda: noisy_floor(one)
    last = {}  # each candidate's latest result: IG's comparison reuses it for the first image

    def run(key, impl):
        last[key] = impl.call(one, t0)

    for library, impls in libraries.items():
        for method, impl in impls.items():
            candidates[(library, method)] = lambda k=(library, method), i=impl: run(k, i)
    slow = frozenset([("floor", b) for b in batches if guess[b] * b > 1.0]
                     + [("noisy floor", n_path), ("batches", n_path)]
                     * (guess[batch] * n_path > 3.0)
                     + [key for key, seconds in first.items() if seconds > 3.0
                        and key[1] in PATH])
    once = frozenset(key for key in slow if first.get(key, 0) > ONCE_SECONDS)
    times = interleaved(candidates, repeats, min_round=MIN_ROUND, slow=slow - once, once=once,
                        slow_rounds=min(repeats, SLOW_ROUNDS))
    f1 = times[("floor", 1)]
    per_image = {b: times[("floor", b)] / b for b in batches}
    best = min(per_image, key=per_image.get)

    # The first call with another target class (a retrace shows here), and a new batch size.
    traces = model.tracing_count()
    new_target = {key: timed(lambda impl=libraries[key[0]][key[1]]: impl.call(one, t1))
                  for key in times if key[0] in libraries and key[1] not in PATH}
    tfsal.vanilla_gradient(model, images[:3], targets[:3])
    retraces = model.tracing_count() - traces

    rows = []
    for library, impls in libraries.items():
        for method in impls:
            base = n_path * per_image[best] if method in PATH else f1
            rows.append(dict(library=library, method=method, seconds=times[(library, method)],
                             ratio=times[(library, method)] / base,
                             first=first[(library, method)], once=(library, method) in once,
                             new_target=new_target.get((library, method))))
    known = {key: value for key, value in last.items() if libraries[key[0]][key[1]].raw is None}
    return dict(name=name, f1=f1, batch=batch, best=best, per_image=per_image, rows=rows,
                forward=times[("forward", 1)], noise=times.get(("noise", n_path)),
                layer_floor=times[("layer floor", 1)],
                noisy_floor=times.get(("noisy floor", n_path)),
                batches=times.get(("batches", n_path)),
                failures=failures, retraces=retraces, n_path=n_path, peers=peers, path=path,
                differences=compare(model, libraries, images, targets, n_path, name, known))


def relative_difference(a, b) -> float:
    """‖a − b‖₂ / ‖b‖₂ (b: the reference)."""
    a, b = np.asarray(a, np.float64).reshape(-1), np.asarray(b, np.float64).reshape(-1)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def compare(model, libraries, images, targets, n_path, name, known) -> dict:
    """Per (library, method): relative L2 difference to tfsal's map (median, max over images);
    for IG also against tfsal with the peer's own quadrature rule, and the completeness error
    of every implementation (tfsal also at 16 steps). `known`: results of the timed calls,
    which were made for the first image."""
    path_images = images if name == "embedded" else images[:1]  # 50 ResNet50 passes each

    def maps(impl: Impl, method: str):
        batch = path_images if method == "integrated_gradients" else images
        key = next((k for k, i in known.items() if i is not None and k[1] == method
                    and libraries[k[0]][k[1]] is impl), None)
        return batch, [np.asarray(known[key], np.float32) if i == 0 and key else
                       impl.numbers(batch[i:i + 1], int(targets[i])) for i in range(len(batch))]

    def completeness(batch, attributions):
        return tfsal.completeness_delta(model, batch, np.concatenate(attributions)
                                        .reshape(batch.shape), targets[:len(batch)],
                                        relative=True)

    reference = {m: maps(libraries["tfsal"][m], m)[1] for m in COMPARED
                 if m in libraries["tfsal"]}
    out = {}
    if "integrated_gradients" in reference:
        ig16 = [tfsal.integrated_gradients(model, path_images[i:i + 1], int(targets[i]),
                                           steps=16) for i in range(len(path_images))]
        out[("tfsal", "ig16")] = dict(completeness=completeness(path_images, ig16))
    for library, impls in libraries.items():
        for method in (m for m in COMPARED if m in impls and m in reference):
            impl = impls[method]
            try:
                batch, found = maps(impl, method)
            except Exception as exc:
                out[(library, method)] = dict(error=short_error(exc))
                continue
            match = impl.reference or (lambda m: m)
            diffs = [relative_difference(f, match(r)) for f, r in zip(found, reference[method])]
            entry = dict(median=float(np.median(diffs)), max=float(np.max(diffs)))
            if method == "integrated_gradients":
                entry["completeness"] = completeness(batch, found)
                if impl.schedule:
                    same = [tfsal.integrated_gradients(model, batch[i:i + 1], int(targets[i]),
                                                       steps=n_path, schedule=impl.schedule)
                            for i in range(len(batch))]
                    entry["same_rule"] = max(relative_difference(f, s)
                                             for f, s in zip(found, same))
            out[(library, method)] = entry
    return out


# ---------------------------------------------------------------------------- report
def label(method: str, n_path: int) -> str:
    return f"{LABEL[method]}-{n_path}" if method in PATH else LABEL[method]


def tfsal_section(results: list[dict], repeats: int) -> list[str]:
    lines = ["## tfsal against the floor", "",
             f"Medians of {repeats} interleaved rounds after a first call (SmoothGrad and IG, "
             f"seconds a call: {min(repeats, SLOW_ROUNDS)} rounds; calls under {MIN_ROUND} s "
             f"repeat within a round until it lasts {MIN_ROUND} s). SmoothGrad and IG are "
             "relative to n × the best batched per-image floor (every library's batch size set "
             "to that batch), everything else to the batch-1 floor.", "",
             "| model | measurement | seconds | ratio | relative to | target | met |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        name, n = r["name"], r["n_path"]
        lines.append(f"| {name} | floor (batch 1) | {r['f1']:.4f} | 1.000 | — | — | — |")
        for b, seconds in r["per_image"].items():
            lines.append(f"| {name} | floor per image (batch {b}) | {seconds:.4f} | "
                         f"{seconds / r['f1']:.3f} | floor | — | — |")
        lines.append(f"| {name} | forward pass alone (batch 1; Grad-CAM's lower bound) | "
                     f"{r['forward']:.4f} | {r['forward'] / r['f1']:.3f} | floor | — | — |")
        lines.append(f"| {name} | Grad-CAM's floor (forward + backward to its layer, compiled, "
                     f"no library) | {r['layer_floor']:.4f} | {r['layer_floor'] / r['f1']:.3f} "
                     "| floor | — | — |")
        if r["noise"] is not None:
            base = n * r["per_image"][r["best"]]
            lines.append(f"| {name} | SmoothGrad's {n} noise draws alone (NumPy) | "
                         f"{r['noise']:.4f} | {r['noise'] / base:.3f} | {n}× per-image floor | "
                         "— | — |")
            sizes = " + ".join(str(min(r["batch"], n - s)) for s in range(0, n, r["batch"]))
            lines.append(f"| {name} | the floor on SmoothGrad's and IG's batches ({sizes}; IG's "
                         f"bound) | {r['batches']:.4f} | {r['batches'] / base:.3f} | "
                         f"{n}× per-image floor | — | — |")
            lines.append(f"| {name} | SmoothGrad-{n}'s floor (the noise draws, one thread per "
                         f"core, + the floor on the same batches of {r['batch']}) | "
                         f"{r['noisy_floor']:.4f} | "
                         f"{r['noisy_floor'] / base:.3f} | {n}× per-image floor | — | — |")
        rows = {row["method"]: row for row in r["rows"] if row["library"] == "tfsal"}
        for method in (m for m in TARGETS if m in rows):
            row, limit = rows[method], TARGETS[method]
            base = f"{n}× per-image floor" if method in PATH else "floor"
            lines.append(f"| {name} | {label(method, n)} | {row['seconds']:.4f} | "
                         f"{row['ratio']:.3f} | {base} | ≤ {limit}× | "
                         f"{'yes' if row['ratio'] <= limit else 'no'} |")
        new = rows["vanilla_gradient"]["new_target"]
        met = "yes" if r["retraces"] == 0 else f"no ({r['retraces']})"
        lines.append(f"| {name} | vanilla gradient, new target class | {new:.4f} | "
                     f"{new / r['f1']:.3f} | floor | 0 retraces (new class, new batch size) | "
                     f"{met} |")
        for method in ("vanilla_gradient", "grad_cam", "rectgrad"):
            seconds = rows[method]["first"]
            lines.append(f"| {name} | first call {LABEL[method]} (trace) | {seconds:.3f} | "
                         f"{seconds / r['f1']:.1f} | floor | — | — |")
    return lines


def peer_model_section(r: dict) -> list[str]:
    n = r["n_path"]
    lines = [f"### {r['name']}", "",
             f"Floor: batch 1 {r['f1']:.4f} s, per image at batch {r['best']} "
             f"{r['per_image'][r['best']]:.4f} s; every library batches by {r['batch']}.", "",
             "| method | library | seconds | ratio | first call (s) | new target (s) | "
             "rel. difference to tfsal (median / max) |", "|---|---|---|---|---|---|---|"]
    by_method = {}
    for row in r["rows"]:
        by_method.setdefault(row["method"], []).append(row)
    for method in METHODS:
        rows = by_method.get(method, [])
        if not rows:
            continue
        for row in rows:
            diff = r["differences"].get((row["library"], method))
            if row["library"] == "tfsal":
                text = "(reference)" if method in COMPARED else "—"
            else:
                text = ("—" if not diff else diff.get("error")
                        or f"{diff['median']:.1e} / {diff['max']:.1e}")
            new = "—" if row["new_target"] is None else f"{row['new_target']:.4f}"
            dagger = " †" if row["once"] else ""
            lines.append(f"| {label(method, n) if row is rows[0] else ''} | {row['library']} | "
                         f"{row['seconds']:.4f}{dagger} | {row['ratio']:.2f} | "
                         f"{row['first']:.2f} | {new} | {text} |")
        for (library, m), why in r["failures"].items():
            if m == method and not why.startswith("not offered"):
                lines.append(f"| | {library} | fails | | | | {why} |")
        others = [row for row in rows if row["library"] != "tfsal"]
        if others:
            fastest = min(others, key=lambda row: row["seconds"])
            lead = fastest["seconds"] / rows[0]["seconds"]
            verdict = (f"tfsal {lead:.2f}× faster" if lead >= 1
                       else f"tfsal {1 / lead:.2f}× slower")
            lines.append(f"| | *fastest peer: {fastest['library']}* | | | | | {verdict} |")
    return lines


def availability_section(results: list[dict]) -> list[str]:
    peers = {p.name: p for r in results for p in r["peers"]}
    shown = [m for m in METHODS]
    lines = ["| library | version | " + " | ".join(LABEL[m] for m in shown) + " |",
             "|---|---|" + "---|" * len(shown)]
    for name, peer in peers.items():
        cells = []
        for method in shown:
            why = next((r["failures"][(name, method)] for r in results
                        if (name, method) in r["failures"]), None)
            cells.append("works" if why is None else why)
        lines.append(f"| {name} | {peer.version} | " + " | ".join(cells) + " |")
    notes = ["", "Conventions matched (what each peer was asked for, and how its numbers were "
             "brought to tfsal's):", ""]
    for name, peer in peers.items():
        for method, impl in peer.impls.items():
            if impl.note:
                notes.append(f"- {name}, {LABEL[method]}: {impl.note}.")
    return lines + notes


def completeness_section(results: list[dict]) -> list[str]:
    lines = ["| model | implementation | steps | quadrature rule | images | median rel. error | "
             "max | max rel. difference to tfsal with the same rule |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        if not r["path"]:
            continue
        diffs = r["differences"]
        entries = [("tfsal", 16, diffs.get(("tfsal", "ig16")))]
        entries += [(library, r["n_path"], entry) for (library, m), entry in diffs.items()
                    if m == "integrated_gradients"]
        for library, steps, entry in entries:
            if not entry or "completeness" not in entry:
                continue
            c = entry["completeness"]
            same = f"{entry['same_rule']:.1e}" if "same_rule" in entry else "—"
            lines.append(f"| {r['name']} | {library} | {steps} | {RULES[library]} | {len(c)} | "
                         f"{np.median(c):.2%} | {c.max():.2%} | {same} |")
    return lines


def markdown(results: list[dict], repeats: int) -> str:
    lines = tfsal_section(results, repeats) + [""]
    if any(r["peers"] for r in results):
        lines += ["## tfsal and its peers", "",
                  "Same process, same rounds as above: every library explains the same flat "
                  "Keras model (pixels in [0, 1] → preprocessing → network → logits), the same "
                  "image and target class. *Ratio*: to the batch-1 floor, for SmoothGrad and IG "
                  "to n × the per-image floor. *First call*: constructing the explainer plus "
                  "its first call (tfsal: a fresh adapter's trace). *New target*: the first "
                  "call with another class. *Rel. difference*: ‖peer − tfsal‖₂ / ‖tfsal‖₂ per "
                  "image after matching conventions (IG: tfsal's default Gauss–Legendre rule, "
                  "so the difference includes the peers' quadrature error). †: a first call "
                  f"over {ONCE_SECONDS:.0f} s; timed in one round only.", "",
                  "### Which peers work with Keras 3", "", *availability_section(results), ""]
        for r in results:
            lines += peer_model_section(r) + [""]
    lines += ["### Integrated Gradients completeness of every implementation", "",
              "|Σ IG − (S(x) − S(black))| / |S(x) − S(black)| on the logit, per image; tfsal "
              f"at 16 and {results[0]['n_path']} steps, peers at {results[0]['n_path']}.", "",
              *completeness_section(results), ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="resnet50,vgg16,embedded")
    parser.add_argument("--peers", default=",".join(PEERS), help="comma-separated, or none")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=None, help="write the markdown here")
    parser.add_argument("--quick", action="store_true", help="a smoke run: small settings")
    args = parser.parse_args()
    peers = [] if args.peers in ("", "none") else args.peers.split(",")
    results = []
    for name in args.models.split(","):
        print(f"benchmarking {name} ...", flush=True)
        results.append(bench_model(name, args.repeats, args.quick, peers))
    report(markdown(results, args.repeats), args.out)


if __name__ == "__main__":
    main()
