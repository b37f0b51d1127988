"""`report.html`: one static page per run that opens from disk (file://), with no server and no
external resource (inline CSS and JavaScript only; a Content-Security-Policy with the hashes
of the two inline blocks refuses anything else).

The page shows the run's settings (fingerprint included), notes, an optional Markdown body,
a table of rows (e.g. one per image: its file name, classes, probabilities and map
thumbnails), failures with their reasons, skipped methods and shared figures. Rows and
failures are not HTML: they are embedded once as JSON (`<script type="application/json">`)
and rendered by the page's script a page at a time (50 rows by default, with paging, a page
size, a filter box over the text of every row and sortable columns), so a run of 10 000
images gives a file of a few MB that opens at once, and only the thumbnails of the page shown
are ever requested (`<img loading="lazy">`). The script builds every element with
`textContent` / `setAttribute`, never `innerHTML`, and the JSON escapes `<`, `>` and `&`, so
no file name can close the script or inject markup.

Links to files are relative to the report's folder and percent-encoded byte by byte: names
that are not UTF-8 (kept by Python as lone surrogates) still resolve; text shows them as
\\xNN escapes.

`write_html_report` is the generic writer; `report_from_explain_summary`,
`report_from_trajectory`, `report_from_evaluation` and `report_from_markdown` read what
`tfsal explain`, `tfsal nonlinear`, `tfsal evaluate` and `tfsal reproduce` wrote into OUT.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import html
import json
import math
import numbers
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote

from tfsal.errors import TfsalError
from tfsal.files import atomic_write

REPORT = "report.html"
KINDS = ("text", "number", "images")


@dataclass(frozen=True)
class Column:
    """A column of the row table.

    Attributes:
        key: the row dict's key.
        heading: the column's heading (default: the key).
        kind: "text", "number" (rounded to 4 significant digits, sorted as numbers) or
            "images": a list of thumbnails, each a path or a dict {"src": path,
            "caption": text}; paths absolute or relative to the report's folder.
    """

    key: str
    heading: str | None = None
    kind: str = "text"

    def __post_init__(self):
        if self.kind not in KINDS:
            raise TfsalError(f"expected a column kind in {KINDS}, received {self.kind!r}")


# ------------------------------------------------------------------------------ the writer
def write_html_report(out_dir, *, title: str, settings: dict | None = None,
                      rows: Iterable[dict] = (), columns: Sequence | None = None,
                      row_name: str = "rows", failures: Iterable[dict] = (),
                      skipped: Iterable[dict] = (), figures: Iterable = (),
                      notes: Sequence[str] = (), markdown: str | None = None,
                      page_size: int = 50, filename: str = REPORT) -> Path:
    """Write `out_dir/filename` (atomically) and return its path.

    Args:
        out_dir: the run's folder; every link is relative to it.
        title: the page's title.
        settings: shown as a table (nested values as compact JSON), e.g. the model, the
            methods, the target rule and the fingerprint.
        rows: dicts, one a row (e.g. per image).
        columns: `Column`s, (key, heading) pairs or keys; default: every key of the rows in
            the order met. A column's kind, when not given by a `Column`, is "images" if its
            first value is a list, "number" if a number, else "text".
        row_name: what a row is, in the page's words ("images", "methods", ...).
        failures: dicts; their "image" (or "name", "path", "method") and "error" (or "reason")
            are shown, any other key too.
        skipped: dicts, e.g. {"method", "reason"}, shown as a table.
        figures: paths of shared figures (PNG), absolute or relative to `out_dir`.
        notes: lines shown at the top as warnings (e.g. "the run did not finish").
        markdown: a Markdown text (the subset of `markdown_to_html`) shown after the settings;
            its image and link targets are relative to `out_dir`.
        page_size: rows on a page when it opens.
        filename: the report's name in `out_dir`.
    """
    out_dir = Path(out_dir)
    base = os.path.abspath(out_dir)
    rows = list(rows)
    columns = _columns(columns, rows)
    tables = {}
    if rows or columns:
        tables["rows"] = {"columns": [{"key": c.key, "heading": c.heading or c.key,
                                       "kind": c.kind} for c in columns],
                          "data": [[_cell(row.get(c.key), c.kind, base) for c in columns]
                                   for row in rows],
                          "noun": _text(row_name), "pageSize": int(page_size)}
    failures, skipped, figures = list(failures), list(skipped), list(figures)
    if failures:
        tables["failures"] = _failure_table(failures, page_size)
    payload = _script_json({"tables": tables})
    parts = [_HEAD.format(title=_esc(title), csp=_CSP), f"<h1>{_esc(title)}</h1>\n",
             f'<p class="meta">{_esc(_generated())}</p>\n', _nav(settings, markdown, tables,
                                                               skipped, figures)]
    parts += [f'<p class="note">{_esc(note)}</p>\n' for note in notes]
    if settings:
        parts.append('<section id="settings"><h2>Settings</h2>\n'
                     + _settings_table(settings) + "</section>\n")
    if markdown:
        parts.append('<section id="text">\n' + markdown_to_html(markdown, base)
                     + "</section>\n")
    if "rows" in tables:
        parts.append(f'<section><h2>{_esc(_text(row_name).capitalize())}</h2>\n'
                     '<div class="paged" id="rows" data-table="rows"></div></section>\n')
    if failures:
        parts.append(f'<section><h2>Failures ({len(failures)})</h2>\n'
                     '<div class="paged" id="failures" data-table="failures"></div>'
                     '</section>\n')
    if skipped:
        parts.append('<section id="skipped"><h2>Skipped</h2>\n'
                     + _static_table(skipped) + "</section>\n")
    if figures:
        parts.append('<section id="figures"><h2>Figures</h2>\n<div class="figures">'
                     + "".join(_figure(f, base) for f in figures) + "</div></section>\n")
    parts.append('<noscript><p class="note">The tables of this page are drawn by its script: '
                 "allow JavaScript to see them.</p></noscript>\n")
    parts.append(f'<script type="application/json" id="tfsal-data">{payload}</script>\n')
    parts.append(f"<script>{_SCRIPT}</script>\n</body>\n</html>\n")
    path = out_dir / filename
    with atomic_write(path) as handle:
        handle.write("".join(parts).encode("utf-8"))
    return path


# -------------------------------------------------------------------------------- adapters
def report_from_explain_summary(out_dir, summary: str = "summary.json") -> Path:
    """report.html of a `tfsal explain` run from OUT/summary.json: one row per image (its
    classes, probabilities when recorded, and the thumbnail of each method's map), the
    failures, the skipped methods and the run's settings."""
    out_dir = Path(out_dir)
    data = _read_json(out_dir / summary, "the summary.json of a `tfsal explain` run")
    run_folder = str(data.get("run_folder") or "")
    here = out_dir / os.path.basename(run_folder.rstrip("/\\")) if run_folder else None
    maps = [m for m in data.get("maps") or [] if isinstance(m, dict)]
    many_targets = len({(m.get("image"), m.get("target")) for m in maps}) > len(
        {m.get("image") for m in maps})
    grouped: dict = {}
    for entry in maps:
        grouped.setdefault(entry.get("image"), []).append(entry)
    folder = _common_folder(grouped)
    rows = []
    for image, entries in grouped.items():
        classes = list(dict.fromkeys(_class_text(e) for e in entries))
        probabilities = list(dict.fromkeys(
            (_class_text(e), e["probability"]) for e in entries
            if isinstance(e.get("probability"), (int, float))))
        thumbs = []
        for e in entries:
            files = e.get("files") or []
            png = next((f for f in files if str(f).lower().endswith(".png")), None)
            if png is None:
                continue
            caption = str(e.get("method", ""))
            if many_targets:
                caption += f" · {_class_text(e)}"
            thumbs.append({"src": _moved(png, run_folder, here), "caption": caption})
        statuses = sorted({str(e.get("status")) for e in entries if e.get("status")})
        name = os.path.relpath(image, folder) if folder else image
        row = {"image": name, "class": ", ".join(classes), "maps": thumbs,
               "status": ", ".join(statuses)}
        if probabilities:
            row["probability"] = (probabilities[0][1] if len(probabilities) == 1 else
                                  " / ".join(f"{_number(p)}" for _, p in probabilities))
        rows.append(row)
    columns = [Column("image", "image"), Column("class", "class"),
               Column("probability", "probability", "number" if not many_targets else "text"),
               Column("maps", "maps", "images"), Column("status", "status")]
    if not any("probability" in r for r in rows):
        columns = [c for c in columns if c.key != "probability"]
    settings = {k: data[k] for k in ("model", "source", "methods", "target", "finished",
                                     "counts", "run_folder", "fingerprint") if k in data}
    if folder:
        settings["images in"] = folder
    notes = []
    if data.get("finished") is False:
        notes.append("This run did not finish (it failed or was interrupted): the maps below "
                     "are those written until then.")
    title = f"tfsal explain: {data.get('source') or data.get('model') or out_dir.name}"
    return write_html_report(out_dir, title=title, settings=settings, rows=rows,
                             columns=columns, row_name="images",
                             failures=data.get("failed") or [],
                             skipped=data.get("skipped") or [], notes=notes)


def report_from_trajectory(out_dir, trajectory: str = "trajectory.json") -> Path:
    """report.html of a `tfsal nonlinear` run from OUT/trajectory.json: one row per
    (image, class) item with its best probability and its figures, then the shared figures."""
    out_dir = Path(out_dir)
    data = _read_json(out_dir / trajectory, "the trajectory.json of a `tfsal nonlinear` run")
    shared = [str(f) for f in data.get("files") or []]
    # The figures were written as <OUT as given on the command line>/...: the shared ones sit
    # directly in it, which tells that prefix.
    written_to = os.path.dirname(shared[0]) if shared else None
    rows = []
    for item in data.get("items") or []:
        if not isinstance(item, dict):
            continue
        blur = item.get("selective_blur") if isinstance(item.get("selective_blur"), dict) else {}
        rows.append({
            "image": item.get("image"), "class": _class_text(item),
            "best probability": item.get("best_probability"),
            "start probability": (item.get("target_probability") or [None])[0],
            "best step": item.get("best_step"),
            "blur: before": blur.get("before"), "blur: after": blur.get("after"),
            "figures": [{"src": _moved(f, written_to, out_dir), "caption": _figure_caption(f)}
                        for f in item.get("files") or []]})
    columns = [Column("image"), Column("class"), Column("start probability", kind="number"),
               Column("best probability", kind="number"), Column("best step", kind="number"),
               Column("blur: before", kind="number"), Column("blur: after", kind="number"),
               Column("figures", kind="images")]
    settings = {k: v for k, v in data.items() if k not in ("items", "files")}
    settings["items"] = len(rows)
    loop = "linear" if data.get("linear") else "nonlinear"
    return write_html_report(out_dir, title=f"tfsal {loop} saliency: {data.get('model', '')}",
                             settings=settings, rows=rows, columns=columns, row_name="items",
                             figures=[_moved(f, written_to, out_dir) for f in shared])


def report_from_evaluation(out_dir, figures: Iterable | None = None) -> Path:
    """report.html of a `tfsal evaluate` run from OUT/results.json: one row per method (or
    signed-map row) with its statistics, the settings, a link to results.csv and the plots
    (`figures`, default: the PNG files directly in OUT)."""
    out_dir = Path(out_dir)
    data = _read_json(out_dir / "results.json", "the results.json of a `tfsal evaluate` run")
    summary = data.get("summary") if isinstance(data.get("summary"), dict) else {}
    rows, keys = [], []
    for name, stats in summary.items():
        stats = stats if isinstance(stats, dict) else {"value": stats}
        keys += [k for k in stats if k not in keys]
        rows.append({"method": name, **stats})
    columns = [Column("method")] + [Column(k, kind="number") for k in keys]
    settings = {k: v for k, v in data.items() if k != "summary"}
    if (out_dir / "results.csv").exists():
        settings["values"] = "results.csv (every value), results.json"
    if figures is None:
        figures = sorted(out_dir.glob("*.png"))
    figures = [f for f in figures if str(f).lower().endswith((".png", ".svg", ".jpg"))]
    return write_html_report(out_dir, title=f"tfsal evaluate: {data.get('metric', '')}",
                             settings=settings, rows=rows, columns=columns, row_name="methods",
                             figures=figures)


def report_from_markdown(out_dir, markdown: str = "report.md", *,
                         settings: dict | None = None) -> Path:
    """report.html from a Markdown report in OUT (`tfsal reproduce`'s report.md): its first
    level-1 heading is the title, the rest is converted by `markdown_to_html`."""
    out_dir = Path(out_dir)
    try:
        text = (out_dir / markdown).read_text(encoding="utf-8", errors="surrogateescape")
    except OSError as exc:
        raise TfsalError(f"expected a readable {markdown} in {_text(out_dir)}, received "
                         f"{exc.strerror or exc}") from None
    lines = text.splitlines()
    title = "tfsal report"
    for i, line in enumerate(lines):
        if line.startswith("# "):
            title = line[2:].strip()
            del lines[i]
            break
        if line.strip():
            break
    return write_html_report(out_dir, title=title, settings=settings,
                             markdown="\n".join(lines))


# -------------------------------------------------------------------------------- Markdown
_INLINE = re.compile(r"(?P<code>`[^`\n]+`)"
                     r"|(?P<image>!\[(?P<alt>[^\]\n]*)\]\((?P<src>[^)\s]+)\))"
                     r"|(?P<link>\[(?P<label>[^\]\n]+)\]\((?P<href>[^)\s]+)\))"
                     r"|(?P<bold>\*\*(?P<strong>[^*\n]+)\*\*)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_SEPARATOR = re.compile(r"^\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")


def markdown_to_html(text: str, out_dir=".") -> str:
    """The Markdown subset of tfsal's reports as HTML, every text escaped: headings,
    paragraphs, pipe tables, lists, fenced code, and inline `code`, **bold**, images and
    links. Image and link targets are files (relative to `out_dir` or absolute): a URL with a
    scheme (http:, javascript:, ...) is shown as text, never loaded."""
    base = os.path.abspath(out_dir)
    lines = text.splitlines()
    out, i = [], 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
        elif line.lstrip().startswith("```"):
            j = i + 1
            while j < len(lines) and not lines[j].lstrip().startswith("```"):
                j += 1
            out.append("<pre><code>" + _esc("\n".join(lines[i + 1:j])) + "</code></pre>")
            i = j + 1
        elif _HEADING.match(line):
            hashes, content = _HEADING.match(line).groups()
            level = max(2, len(hashes))  # the page's h1 is its title
            out.append(f"<h{level}>{_inline(content, base)}</h{level}>")
            i += 1
        elif line.lstrip().startswith("|") and i + 1 < len(lines) and _SEPARATOR.match(
                lines[i + 1].strip()):
            j = i + 2
            while j < len(lines) and lines[j].lstrip().startswith("|"):
                j += 1
            out.append(_md_table(lines[i], lines[i + 2:j], base))
            i = j
        elif _LIST_ITEM.match(line):
            items = []
            while i < len(lines) and _LIST_ITEM.match(lines[i]):
                items.append(_LIST_ITEM.sub("", lines[i], count=1))
                i += 1
            ordered = lines[i - 1].lstrip()[:1].isdigit()
            tag = "ol" if ordered else "ul"
            out.append(f"<{tag}>" + "".join(f"<li>{_inline(t, base)}</li>" for t in items)
                       + f"</{tag}>")
        else:
            paragraph = []
            while (i < len(lines) and lines[i].strip() and not _HEADING.match(lines[i])
                   and not lines[i].lstrip().startswith(("|", "```"))
                   and not _LIST_ITEM.match(lines[i])):
                paragraph.append(lines[i].strip())
                i += 1
            if not paragraph:  # a lone table row without a separator: shown as text
                paragraph.append(lines[i].strip())
                i += 1
            out.append("<p>" + _inline("\n".join(paragraph), base) + "</p>")
    return "\n".join(out) + "\n"


def _md_table(header: str, body: list[str], base: str) -> str:
    def cells(line):
        line = line.strip()
        line = line[1:] if line.startswith("|") else line
        line = line[:-1] if line.endswith("|") and not line.endswith("\\|") else line
        return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line)]

    head = "".join(f"<th>{_inline(c, base)}</th>" for c in cells(header))
    rows = "".join("<tr>" + "".join(f"<td>{_inline(c, base)}</td>" for c in cells(r))
                   + "</tr>" for r in body)
    return f"<table class=\"md\"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _inline(text: str, base: str) -> str:
    out, at = [], 0
    for match in _INLINE.finditer(text):
        out.append(_esc(text[at:match.start()]))
        at = match.end()
        if match["code"]:
            out.append(f"<code>{_esc(match['code'][1:-1])}</code>")
        elif match["bold"]:
            out.append(f"<strong>{_esc(match['strong'])}</strong>")
        elif match["image"]:
            src = match["src"]
            if _has_scheme(src):
                out.append(_esc(match[0]))
            else:
                url = _esc(_url(src, base, from_markdown=True))
                alt = match["alt"] or os.path.basename(src)
                out.append(f'<a href="{url}"><img class="md" loading="lazy" src="{url}" '
                           f'alt="{_esc(alt)}"></a>')
        else:
            href = match["href"]
            if _has_scheme(href) or href.startswith("#"):
                out.append(_esc(match["label"]) if not href.startswith("#") else
                           f'<a href="{_esc(_fragment(href))}">{_esc(match["label"])}</a>')
            else:
                out.append(f'<a href="{_esc(_url(href, base, from_markdown=True))}">'
                           f'{_esc(match["label"])}</a>')
    out.append(_esc(text[at:]))
    return "".join(out)


def _has_scheme(target: str) -> bool:
    return bool(re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", target)) or target.startswith("//")


def _fragment(href: str) -> str:
    return "#" + quote(_bytes(href[1:]), safe="")


# ----------------------------------------------------------------------------- internals
def _common_folder(images) -> str | None:
    """The folder every image path is in (named as the rows' prefix), or None."""
    paths = [p for p in images if isinstance(p, str)]
    if len(paths) != len(images) or not paths or not all(os.path.isabs(p) for p in paths):
        return None
    try:
        folder = os.path.commonpath([os.path.dirname(p) for p in paths])
    except ValueError:  # other drives (Windows)
        return None
    return folder if folder != os.path.dirname(folder) else None  # not the root


def _columns(columns, rows: list[dict]) -> list[Column]:
    if columns is None:
        keys = list(dict.fromkeys(k for row in rows for k in row))
        columns = keys
    result = []
    for column in columns:
        if isinstance(column, Column):
            result.append(column)
            continue
        key, heading = (column, None) if isinstance(column, str) else tuple(column)
        first = next((r[key] for r in rows if r.get(key) is not None), None)
        kind = ("images" if isinstance(first, (list, tuple)) else
                "number" if isinstance(first, numbers.Real) and not isinstance(first, bool)
                else "text")
        result.append(Column(key, heading, kind))
    return result


def _cell(value, kind: str, base: str):
    """A row's value as the page's JSON: text, a rounded number, or [[url, caption], ...]."""
    if value is None:
        return None
    if kind == "images":
        if isinstance(value, (str, os.PathLike, dict)):
            value = [value]
        thumbs = []
        for thumb in value:
            if isinstance(thumb, dict):
                src, caption = thumb.get("src"), thumb.get("caption")
            else:
                src, caption = thumb, None
            if src is None:
                continue
            caption = os.path.basename(str(src)) if caption is None else caption
            thumbs.append([_url(src, base), _text(caption)])
        return thumbs
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)) or (kind == "number" and _is_number(value)):
        return _number(value)
    if isinstance(value, (list, tuple, dict)):
        return _text(_compact(value))
    return _text(value)


def _is_number(value) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return not isinstance(value, str)


def _number(value):
    """Finite numbers rounded to 4 significant digits (compact JSON); others as text (JSON has
    no NaN or infinity)."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return value
    value = float(value)
    if not math.isfinite(value):
        return str(value)
    rounded = float(f"{value:.4g}")
    return int(rounded) if rounded.is_integer() and abs(rounded) < 2 ** 53 else rounded


def _failure_table(failures: list[dict], page_size: int) -> dict:
    name_keys = ("image", "name", "path", "method")
    reason_keys = ("error", "reason")
    others = list(dict.fromkeys(k for f in failures if isinstance(f, dict) for k in f
                                if k not in name_keys + reason_keys))
    columns = [{"key": "name", "heading": "file", "kind": "text"},
               {"key": "reason", "heading": "reason", "kind": "text"},
               *({"key": k, "heading": k, "kind": "text"} for k in others)]
    data = []
    for failure in failures:
        failure = failure if isinstance(failure, dict) else {"error": failure}
        name = next((failure[k] for k in name_keys if failure.get(k) is not None), "")
        reason = next((failure[k] for k in reason_keys if failure.get(k) is not None), "")
        data.append([_text(name), _text(reason), *(_cell(failure.get(k), "text", ".")
                                                   for k in others)])
    return {"columns": columns, "data": data, "noun": "failures", "pageSize": int(page_size)}


def _url(path, base: str, from_markdown: bool = False) -> str:
    """A relative URL from the report's folder to `path` (absolute, or relative to that
    folder), percent-encoded byte by byte (file names that are not UTF-8 included)."""
    path = os.fspath(path)
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if from_markdown:  # Markdown targets are URLs already: %XX stand for bytes
        path = unquote(path, errors="surrogateescape")
    if os.path.isabs(path):
        prefix = base.rstrip(os.sep) + os.sep
        if path.startswith(prefix):  # the usual case, fast (relpath is slow)
            path = path[len(prefix):]
        else:
            try:
                path = os.path.relpath(path, base)
            except ValueError:  # another drive (Windows): an absolute file URL
                return Path(path).as_uri()
    if os.sep != "/":
        path = path.replace(os.sep, "/")
    return quote(_bytes(path), safe="/")


def _bytes(text: str) -> bytes:
    if text.isascii():
        return text.encode()
    return _OTHER_SURROGATES.sub("\ufffd", text).encode("utf-8", "surrogateescape")


def _text(value) -> str:
    """Text safe to encode as UTF-8: bytes that are not UTF-8 (lone surrogates) become \\xNN
    escapes, as `tfsal.runs.shown` prints them."""
    text = _OTHER_SURROGATES.sub(lambda m: f"\\u{ord(m[0]):04x}", str(value))
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


_OTHER_SURROGATES = re.compile("[\ud800-\udc7f\udd00-\udfff]")  # not bytes of a file name


def _esc(value) -> str:
    return html.escape(_text(value), quote=True)


def _compact(value) -> str:
    return json.dumps(value, ensure_ascii=False, default=str, separators=(", ", ": "))


def _script_json(payload) -> str:
    """JSON that cannot end its <script> element nor open a comment: <, > and & (only ever
    inside strings) as \\u escapes; ensure_ascii also escapes U+2028 and U+2029."""
    text = json.dumps(payload, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _settings_table(settings: dict) -> str:
    rows = []
    for key, value in settings.items():
        if isinstance(value, dict) and value and all(
                not isinstance(v, (dict, list)) for v in value.values()):
            shown = _settings_table(value)
        elif isinstance(value, (dict, list, tuple)):
            shown = f"<code>{_esc(_compact(value))}</code>"
        elif isinstance(value, bool):
            shown = "yes" if value else "no"
        else:
            shown = _esc(value)
        rows.append(f"<tr><th>{_esc(key)}</th><td>{shown}</td></tr>")
    return '<table class="settings">' + "".join(rows) + "</table>\n"


def _static_table(entries: list[dict]) -> str:
    entries = [e if isinstance(e, dict) else {"": e} for e in entries]
    keys = list(dict.fromkeys(k for e in entries for k in e))
    head = "".join(f"<th>{_esc(k)}</th>" for k in keys)
    body = "".join("<tr>" + "".join(
        f"<td>{_esc(e[k] if isinstance(e.get(k), str) else _compact(e.get(k)))}</td>"
        if k in e else "<td></td>" for k in keys) + "</tr>" for e in entries)
    return f'<table class="plain"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>\n'


def _figure(path, base: str) -> str:
    url = _esc(_url(path, base))
    name = _esc(os.path.basename(os.fspath(path)))
    return (f'<figure><a href="{url}"><img loading="lazy" src="{url}" alt="{name}"></a>'
            f"<figcaption>{name}</figcaption></figure>")


def _nav(settings, markdown, tables, skipped, figures) -> str:
    links = [("settings", "settings", bool(settings)), ("text", "report", bool(markdown)),
             ("rows", "rows", "rows" in tables), ("failures", "failures", "failures" in tables),
             ("skipped", "skipped", bool(skipped)), ("figures", "figures", bool(figures))]
    shown = [f'<a href="#{target}">{label}</a>' for target, label, present in links if present]
    return f'<nav>{" · ".join(shown)}</nav>\n' if len(shown) > 1 else ""


def _generated() -> str:
    from tfsal import __version__

    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    return f"written by tfsal {__version__} on {now}"


def _class_text(entry: dict) -> str:
    label, target = entry.get("label"), entry.get("target")
    if label is None:
        return "" if target is None else str(target)
    return str(label) if str(label) == str(target) or target is None else f"{label} ({target})"


def _figure_caption(path) -> str:
    name = os.path.basename(str(path))
    for suffix, caption in (("_strip.png", "strip"),
                            ("_linear_vs_nonlinear.png", "linear vs nonlinear")):
        if name.endswith(suffix):
            return caption
    return name


def _moved(path, written_to: str | None, here: Path | None) -> str:
    """A file recorded as `written_to`/rest, now at `here`/rest (OUT may have been given as a
    relative path, or moved since); other paths as recorded."""
    path = str(path)
    if written_to and here is not None:
        prefix = written_to.rstrip("/\\")
        for sep in {os.sep, "/"}:
            if path.startswith(prefix + sep):
                return os.path.join(os.path.abspath(here), path[len(prefix) + 1:])
    return os.path.abspath(path) if not os.path.isabs(path) else path


def _read_json(path: Path, what: str) -> dict:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError) as exc:
        raise TfsalError(f"expected {what} at {_text(path)}, received "
                         f"{getattr(exc, 'strerror', None) or exc}") from None
    if not isinstance(data, dict):
        raise TfsalError(f"expected {what} (a JSON object) at {_text(path)}, received "
                         f"{type(data).__name__}")
    return data


# ------------------------------------------------------------------------- page template
_STYLE = """
:root{color-scheme:light dark;--fg:#1d2329;--muted:#5d6b78;--bg:#fff;--alt:#f3f5f8;
--line:#d5dbe1;--accent:#2962c4;--warn:#fff4d6}
@media (prefers-color-scheme:dark){:root{--fg:#e3e7eb;--muted:#9aa7b3;--bg:#15191d;
--alt:#1e2429;--line:#36404a;--accent:#7ea6ff;--warn:#3d3416}}
*{box-sizing:border-box}
body{margin:0 auto;padding:1rem 1.5rem 3rem;max-width:1600px;color:var(--fg);
background:var(--bg);font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
h1{font-size:1.5rem;margin:.2rem 0}h2{font-size:1.2rem;margin:1.6rem 0 .6rem;
border-bottom:1px solid var(--line);padding-bottom:.2rem}
a{color:var(--accent)}
.meta,nav{color:var(--muted);margin:.2rem 0}
.note{background:var(--warn);padding:.5rem .8rem;border-radius:4px}
table{border-collapse:collapse}
th,td{border:1px solid var(--line);padding:.3rem .5rem;text-align:left;vertical-align:top}
thead th{background:var(--alt);position:sticky;top:0;z-index:1}
tbody tr:nth-child(even){background:var(--alt)}
table.settings th{background:var(--alt);font-weight:600;white-space:nowrap}
table.settings table.settings{margin:0}
code{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.9em;word-break:break-all}
.controls{display:flex;flex-wrap:wrap;gap:.5rem;align-items:center;margin:.4rem 0 .6rem}
.controls input[type=search]{min-width:18rem;padding:.3rem .5rem}
.controls button{padding:.25rem .7rem}
.info{color:var(--muted)}
.paged table{width:100%}
.paged th.sortable{cursor:pointer;user-select:none}
.paged th.asc::after{content:" \\25B2"}.paged th.desc::after{content:" \\25BC"}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.name{word-break:break-all;min-width:12rem;max-width:36rem}
.thumbs{display:flex;flex-wrap:wrap;gap:.4rem}
.thumbs figure,.figures figure{margin:0;text-align:center}
.thumbs img{width:112px;height:112px;object-fit:contain;background:var(--alt);
border:1px solid var(--line);image-rendering:pixelated}
.thumbs figcaption{font-size:.8em;color:var(--muted);max-width:112px;overflow-wrap:anywhere}
.thumbs .missing{display:inline-block;width:112px;height:112px;border:1px dashed var(--line)}
.figures{display:flex;flex-wrap:wrap;gap:1rem}
.figures img{max-width:min(560px,100%);border:1px solid var(--line)}
img.md{max-width:min(720px,100%);border:1px solid var(--line);margin:.2rem}
.empty{color:var(--muted);font-style:italic}
"""

_JS = r"""
"use strict";
(function () {
  var source = document.getElementById("tfsal-data");
  var tables = JSON.parse(source.textContent).tables;
  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function shown(value) {
    if (value === null || value === undefined) return "";
    return String(value);
  }
  function thumbs(list) {
    var box = el("div", "thumbs");
    (list || []).forEach(function (thumb) {
      var figure = el("figure"), link = el("a"), img = el("img");
      link.setAttribute("href", thumb[0]);
      img.setAttribute("loading", "lazy");
      img.setAttribute("decoding", "async");
      img.setAttribute("alt", thumb[1] || "");
      img.setAttribute("title", thumb[1] || "");
      img.addEventListener("error", function () {
        var missing = el("span", "missing", "missing");
        missing.setAttribute("title", thumb[0]);
        if (img.parentNode) img.parentNode.replaceChild(missing, img);
      });
      img.setAttribute("src", thumb[0]);
      link.appendChild(img);
      figure.appendChild(link);
      figure.appendChild(el("figcaption", null, thumb[1]));
      box.appendChild(figure);
    });
    return box;
  }
  function Paged(root, spec) {
    var columns = spec.columns, data = spec.data, noun = spec.noun || "rows";
    var size = spec.pageSize || 50, page = 0, order = null, sortKey = -1, sortDir = 1;
    var haystack = null, visible = data.map(function (_, i) { return i; });
    var controls = el("div", "controls");
    var filter = el("input", "filter");
    filter.setAttribute("type", "search");
    filter.setAttribute("placeholder", "filter by name, class, …");
    filter.setAttribute("aria-label", "filter " + noun);
    var first = el("button", "first", "« first"), prev = el("button", "prev", "‹ previous");
    var next = el("button", "next", "next ›"), last = el("button", "last", "last »");
    var pageSize = el("select", "page-size");
    [25, 50, 100, 200, 500].concat([size]).filter(function (v, i, a) {
      return a.indexOf(v) === i;
    }).sort(function (a, b) { return a - b; }).forEach(function (v) {
      var option = el("option", null, v + " a page");
      option.setAttribute("value", String(v));
      if (v === size) option.selected = true;
      pageSize.appendChild(option);
    });
    var info = el("span", "info"), pageInfo = el("span", "page-info");
    var from = el("span", "from"), to = el("span", "to"), count = el("span", "count");
    var total = el("span", "total", data.length), filtered = el("span", "filtered");
    info.appendChild(document.createTextNode(noun + " "));
    info.appendChild(from); info.appendChild(document.createTextNode("–"));
    info.appendChild(to); info.appendChild(document.createTextNode(" of "));
    info.appendChild(count); info.appendChild(filtered);
    info.appendChild(document.createTextNode(" (total "));
    info.appendChild(total); info.appendChild(document.createTextNode(")"));
    [filter, first, prev, pageInfo, next, last, pageSize, info].forEach(function (node) {
      controls.appendChild(node);
    });
    var table = el("table"), head = el("thead"), body = el("tbody"), headRow = el("tr");
    var headers = columns.map(function (column, index) {
      var th = el("th", column.kind === "images" ? null : "sortable", column.heading);
      th.setAttribute("scope", "col");
      if (column.kind !== "images") {
        th.addEventListener("click", function () { sortBy(index); });
      }
      headRow.appendChild(th);
      return th;
    });
    head.appendChild(headRow);
    table.appendChild(head);
    table.appendChild(body);
    root.appendChild(controls);
    root.appendChild(table);
    var empty = el("p", "empty", data.length ? "no " + noun + " match the filter"
                                             : "no " + noun);
    empty.hidden = true;
    root.appendChild(empty);

    function text(row) {
      return columns.map(function (column, i) {
        var value = row[i];
        if (column.kind === "images") {
          return (value || []).map(function (t) { return t[1]; }).join(" ");
        }
        return shown(value);
      }).join("\u0000").toLowerCase();
    }
    function applyFilter() {
      var words = filter.value.toLowerCase().split(/\s+/).filter(Boolean);
      var base = order || data.map(function (_, i) { return i; });
      if (!words.length) {
        visible = base.slice();
      } else {
        if (!haystack) haystack = data.map(text);
        visible = base.filter(function (i) {
          return words.every(function (w) { return haystack[i].indexOf(w) >= 0; });
        });
      }
      page = 0;
      render();
    }
    function compare(a, b, numeric) {
      var x = data[a][sortKey], y = data[b][sortKey];
      if (x === null || x === undefined) return (y === null || y === undefined) ? a - b : 1;
      if (y === null || y === undefined) return -1;
      var r;
      if (numeric && typeof x === "number" && typeof y === "number") r = x - y;
      else r = String(x).localeCompare(String(y), undefined, {numeric: true});
      return r ? r * sortDir : a - b;
    }
    function sortBy(index) {
      sortDir = sortKey === index ? -sortDir : 1;
      sortKey = index;
      var numeric = columns[index].kind === "number";
      order = data.map(function (_, i) { return i; });
      order.sort(function (a, b) { return compare(a, b, numeric); });
      headers.forEach(function (th, i) {
        th.classList.toggle("asc", i === index && sortDir > 0);
        th.classList.toggle("desc", i === index && sortDir < 0);
      });
      applyFilter();
    }
    function render() {
      var pages = Math.max(1, Math.ceil(visible.length / size));
      page = Math.min(Math.max(page, 0), pages - 1);
      var start = page * size, stop = Math.min(visible.length, start + size);
      var rows = document.createDocumentFragment();
      for (var k = start; k < stop; k++) {
        var row = data[visible[k]], tr = el("tr");
        columns.forEach(function (column, i) {
          var td;
          if (column.kind === "images") {
            td = el("td", "images");
            td.style.minWidth = Math.min((row[i] || []).length, 5) * 120 + "px";
            td.appendChild(thumbs(row[i]));
          } else {
            td = el("td", column.kind === "number" ? "num" : (i === 0 ? "name" : null),
                    shown(row[i]));
          }
          tr.appendChild(td);
        });
        rows.appendChild(tr);
      }
      body.textContent = "";
      body.appendChild(rows);
      from.textContent = String(visible.length ? start + 1 : 0);
      to.textContent = String(stop);
      count.textContent = String(visible.length);
      filtered.textContent = visible.length === data.length ? "" : " matching";
      pageInfo.textContent = "page " + (page + 1) + " of " + pages;
      first.disabled = prev.disabled = page === 0;
      next.disabled = last.disabled = page >= pages - 1;
      empty.hidden = visible.length > 0;
    }
    var timer = null;
    filter.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(applyFilter, 120);
    });
    first.addEventListener("click", function () { page = 0; render(); });
    prev.addEventListener("click", function () { page -= 1; render(); });
    next.addEventListener("click", function () { page += 1; render(); });
    last.addEventListener("click", function () { page = Infinity; render(); });
    pageSize.addEventListener("change", function () {
      var firstRow = page * size;
      size = parseInt(pageSize.value, 10) || 50;
      page = Math.floor(firstRow / size);
      render();
    });
    render();
  }
  Array.prototype.forEach.call(document.querySelectorAll(".paged"), function (root) {
    var spec = tables[root.getAttribute("data-table")];
    if (spec) Paged(root, spec);
  });
  document.documentElement.setAttribute("data-ready", "1");
})();
"""


def _hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


_SCRIPT = _JS
_CSP = (f"default-src 'none'; img-src * data: file:; style-src {_hash(_STYLE)}; "
        f"script-src {_hash(_SCRIPT)}; base-uri 'none'; form-action 'none'")
_HEAD = ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
         "<meta http-equiv=\"Content-Security-Policy\" content=\"{csp}\">\n"
         "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
         "<meta name=\"referrer\" content=\"no-referrer\">\n"
         "<title>{title}</title>\n<link rel=\"icon\" href=\"data:,\">\n"
         "<style>" + _STYLE.replace("{", "{{").replace("}", "}}") + "</style>\n"
         "</head>\n<body>\n")
