"""One way to make HTML: a Jinja2 environment over ``transforms/reports/templates/`` with autoescaping on, and the
text catalogue and Vietnamese formats as template globals and filters (``t``, ``num``, ``pct``, ``day``,
``rule_name``, ``table_name``...). The KPI report and the data-quality report both render through it."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from transforms.reports import texts

TEMPLATES = Path(__file__).with_name("templates")


@cache
def environment(lang: str = "vi"):
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.globals.update(t=lambda key, **kw: texts.t(key, lang, **kw), lang=lang)
    env.filters.update(
        num=lambda x, d=0, empty="": texts.number(x, d, lang, empty),
        pct=lambda x, d=1, empty="": texts.percent(x, d, lang, empty),
        day=lambda d: texts.day(d, lang),
        moment=lambda d: texts.moment(d, lang),
        kpi_value=lambda x, unit, empty="": texts.kpi_value(x, unit, lang, empty),
        rule_name=lambda r: texts.rule_name(r, lang),
        table_name=lambda n: texts.table_name(n, lang),
        level_name=lambda lv: texts.level_name(lv, lang),
        source_name=lambda s: texts.source_name(s, lang),
        entity_name=lambda e: texts.entity_name(e, lang),
    )
    return env


def render(template: str, lang: str = "vi", **context) -> str:
    return environment(lang).get_template(template).render(**context)


def write_atomic(path: Path, text: str) -> Path:
    """Write aside, then rename: a reader never sees half a page."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path
