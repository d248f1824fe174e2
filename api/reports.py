"""The monthly energy report: gathered once, rendered as CSV, HTML (inline SVG charts) or PDF
(fpdf2), in Chinese or English.

The PDF needs a font with Chinese glyphs: Debian's ``fonts-droid-fallback``
(``DroidSansFallbackFull.ttf``, a plain TrueType file that fpdf2 embeds as a subset), with
DejaVu Sans (``fonts-dejavu-core``) for Latin text, since the fallback font has only CJK glyphs;
``run.sh`` installs both. Without them, English PDFs still render with a core font.
"""

from __future__ import annotations

import csv
import html
import io
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Response

from api.accounting import (
    BillOut,
    SubjectSummary,
    Summary,
    _month_bounds,
    _rollups,
    compute_bill,
    summarize,
)
from api.common import State, StateDep, _park, shown
from parkwatch.site import Park

CJK_FONTS = (
    Path("/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf"),
    Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttf"),
)
# Latin, digits and symbols (Droid Sans Fallback has only the CJK glyphs): fonts-dejavu-core
LATIN_FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")

LABELS: dict[str, dict[str, str]] = {
    "title": {"zh": "月度能源报告", "en": "Monthly energy report"},
    "park": {"zh": "园区", "en": "Park"},
    "subject": {"zh": "对象", "en": "Subject"},
    "month": {"zh": "月份", "en": "Month"},
    "generated": {"zh": "生成时间", "en": "Generated"},
    "item": {"zh": "项目", "en": "Item"},
    "value": {"zh": "数值", "en": "Value"},
    "unit": {"zh": "单位", "en": "Unit"},
    "e_kwh": {"zh": "外购电量", "en": "Grid electricity"},
    "e_export_kwh": {"zh": "上网电量", "en": "Electricity exported"},
    "pv_kwh": {"zh": "光伏发电量", "en": "PV generation"},
    "vol_m3": {"zh": "用水量", "en": "Water"},
    "gas_nm3": {"zh": "天然气", "en": "Natural gas"},
    "air_nm3": {"zh": "压缩空气", "en": "Compressed air"},
    "steam_t": {"zh": "蒸汽", "en": "Steam"},
    "heat_gj": {"zh": "热量", "en": "Heat"},
    "tce_equal": {"zh": "综合能耗（当量值）", "en": "Comprehensive energy (equal value)"},
    "tce_equivalent": {"zh": "综合能耗（等价值）", "en": "Comprehensive energy (equivalent value)"},
    "co2_t": {"zh": "二氧化碳排放（基于位置）", "en": "CO₂ (location-based)"},
    "co2_t_market": {"zh": "二氧化碳排放（扣除绿证）", "en": "CO₂ (after green certificates)"},
    "electricity_share": {"zh": "电力占终端能源比重", "en": "Electricity share of final energy"},
    "tce_per_10k_cny": {"zh": "万元增加值能耗", "en": "Energy per ¥10 000 value added"},
    "water_m3_per_10k_cny": {"zh": "万元增加值用水量", "en": "Water per ¥10 000 value added"},
    "completeness": {"zh": "数据完整率", "en": "Data completeness"},
    "estimated_share": {"zh": "估算占比", "en": "Estimated share"},
    "grid_factor": {"zh": "电网排放因子", "en": "Grid emission factor"},
    "convention": {"zh": "电力折标准煤方法（用于强度）", "en": "Electricity to coal (intensities)"},
    "equal": {"zh": "当量值", "en": "equal value (当量值)"},
    "equivalent": {"zh": "等价值", "en": "equivalent value (等价值)"},
    "unverified": {"zh": "未核实", "en": "unverified"},
    "bill": {"zh": "电费（重算）", "en": "Electricity bill (recomputed)"},
    "enterprise": {"zh": "企业", "en": "Enterprise"},
    "critical": {"zh": "尖峰", "en": "Critical peak"},
    "peak": {"zh": "高峰", "en": "Peak"},
    "flat": {"zh": "平段", "en": "Flat"},
    "valley": {"zh": "低谷", "en": "Valley"},
    "max_demand_kw": {"zh": "最大需量", "en": "Maximum demand"},
    "demand_charge": {"zh": "基本电费", "en": "Demand charge"},
    "total": {"zh": "合计", "en": "Total"},
    "shift_savings": {"zh": "移峰填谷可节省", "en": "Saved by moving load out of the peak"},
    "daily_kwh": {"zh": "每日外购电量 (kWh)", "en": "Grid electricity per day (kWh)"},
    "daily_co2": {"zh": "每日二氧化碳排放 (kg)", "en": "CO₂ per day (kg)"},
    "sources": {"zh": "系数来源", "en": "Sources"},
    "value_added": {"zh": "工业增加值", "en": "Industrial value added"},
    "tariff_source": {"zh": "电价来源", "en": "tariff source"},
    "products": {
        "zh": "单位产品能耗与能效标杆水平、基准水平",
        "en": "Energy per unit of product against the benchmark (标杆) and baseline (基准) levels",
    },
    "no_products": {"zh": "本月未录入产量", "en": "No production entered for the month"},
    "output": {"zh": "产量", "en": "output"},
    "per_unit": {"zh": "单位产品综合能耗", "en": "energy per unit"},
    "levels": {"zh": "标杆水平 / 基准水平", "en": "benchmark (标杆) / baseline (基准) level"},
    "level": {"zh": "能效水平", "en": "standing"},
    # benchmark_level's answers (parkwatch.energy), lower energy per unit is better
    "标杆 benchmark": {"zh": "达到标杆水平", "en": "at or better than the benchmark level"},
    "基准 to 标杆": {"zh": "介于基准水平与标杆水平之间", "en": "between baseline and benchmark"},
    "below 基准 baseline": {"zh": "未达到基准水平", "en": "worse than the baseline level"},
    # the products of parkwatch/data/benchmarks.yaml
    "cement_clinker": {"zh": "水泥熟料", "en": "Cement clinker"},
    "blast_furnace_iron": {"zh": "高炉炼铁", "en": "Blast-furnace ironmaking"},
    "bof_steel": {"zh": "转炉炼钢", "en": "BOF steelmaking"},
    "flat_glass_500_800": {"zh": "平板玻璃（500–800 t/d）", "en": "Flat glass (500–800 t/d)"},
    "ethylene": {"zh": "乙烯", "en": "Ethylene"},
    "coke_top_charged": {"zh": "焦炭（顶装焦炉）", "en": "Coke (top-charged oven)"},
}
UNITS = {
    "e_kwh": "kWh",
    "e_export_kwh": "kWh",
    "pv_kwh": "kWh",
    "vol_m3": "m³",
    "gas_nm3": "Nm³",
    "air_nm3": "Nm³",
    "steam_t": "t",
    "heat_gj": "GJ",
    "tce_equal": "tce",
    "tce_equivalent": "tce",
    "co2_t": "t CO₂",
    "co2_t_market": "t CO₂",
    "electricity_share": "%",
    "tce_per_10k_cny": "tce/万元",
    "water_m3_per_10k_cny": "m³/万元",
    "completeness": "%",
    "estimated_share": "%",
}


def t(key: str, lang: str) -> str:
    return LABELS.get(key, {}).get(lang, key)


# where a figure of value added comes from (api.accounting.entered, _value_added), in Chinese
SOURCES_ZH = (
    (
        r"entered for the year, allocated pro rata of days \((\d+(?:\.\d+)?)/(\d+)\)",
        r"年度录入值按天数分摊（\1/\2）",
    ),
    (r"entered for the month", "当月录入值"),
    (r"entered for the year", "年度录入值"),
    (r"entered for (\d+) of 12 months, summed", r"\1 个月录入值合计"),
    (r"park\.yaml, yearly, prorated by days", "park.yaml 年度值按天数分摊"),
    (r"sum of enterprises: ", "各企业合计："),
)


def value_added_source(source: str, lang: str) -> str:
    if lang != "zh":
        return source
    for pattern, replacement in SOURCES_ZH:
        source = re.sub(pattern, replacement, source)
    return source


@dataclass
class ReportData:
    park: Park
    month: str
    subject: SubjectSummary
    summary: Summary
    bills: list[BillOut]
    days: list[str]
    # every day of the month; None: no rollup that day (a gap, shown empty, never as zero)
    daily_kwh: list[float | None]
    daily_co2: list[float | None]
    generated: datetime = field(default_factory=datetime.now)
    bill_notes: list[str] = field(default_factory=list)  # bills that could not be made

    def rows(self, lang: str) -> list[tuple[str, str, str]]:
        s = self.subject
        out: list[tuple[str, str, str]] = []
        for q, v in sorted(s.consumption.items()):
            out.append((t(q, lang), f"{v:,.1f}", UNITS.get(q, "")))
        out.append((t("tce_equal", lang), f"{s.tce_equal:,.3f}", "tce"))
        out.append((t("tce_equivalent", lang), f"{s.tce_equivalent:,.3f}", "tce"))
        e = self.summary.electricity_kgce
        if e:
            # which convention the intensities use, and both coefficients with their status:
            # the 等价值 is an unverified default unless the park set its own
            def coefficient(kind: str) -> str:
                status = e[f"{kind}_status"]
                mark = f", {t('unverified', lang)}" if status == "U" else ""
                return f"{t(kind, lang)} {e[kind]:g} ({status}{mark})"

            out.append(
                (
                    t("convention", lang),
                    t(e["convention"], lang),
                    "kgce/kWh: " + "; ".join(coefficient(k) for k in ("equal", "equivalent")),
                )
            )
        out.append((t("co2_t", lang), f"{s.co2_t:,.3f}", "t CO₂"))
        out.append((t("co2_t_market", lang), f"{s.co2_t_market:,.3f}", "t CO₂"))
        if s.electricity_share is not None:
            out.append((t("electricity_share", lang), f"{100 * s.electricity_share:.1f}", "%"))
        if s.tce_per_10k_cny is not None:
            out.append((t("tce_per_10k_cny", lang), f"{s.tce_per_10k_cny:.4f}", "tce/万元"))
        if s.water_m3_per_10k_cny is not None:
            out.append(
                (t("water_m3_per_10k_cny", lang), f"{s.water_m3_per_10k_cny:.3f}", "m³/万元")
            )
        if s.value_added_cny is not None:
            # with where it comes from: an allocation of a yearly figure says so
            source = value_added_source(s.value_added_source, lang)
            out.append((t("value_added", lang), f"{s.value_added_cny:,.0f}", f"¥ ({source})"))
        out.append((t("completeness", lang), f"{100 * s.completeness:.1f}", "%"))
        out.append((t("estimated_share", lang), f"{100 * s.estimated_share:.2f}", "%"))
        g = self.summary.grid_factor
        out.append(
            (t("grid_factor", lang), f"{g['kg_per_kwh']}", f"kg/kWh ({g['id']}, {g['document']})")
        )
        return out

    def product_rows(self, lang: str) -> list[tuple[str, str, str]]:
        """Per product: output, energy per unit and, where the product has levels in
        benchmarks.yaml, the 标杆/基准 levels and where the subject stands."""
        if not self.subject.products:
            return [(t("no_products", lang), "", "")]
        out: list[tuple[str, str, str]] = []
        for p in self.subject.products:
            name = t(p["product"], lang)
            unit = p.get("unit") or ""
            out.append((f"{name} {t('output', lang)}", f"{p['amount']:,.3f}", unit))
            per = f"kgce/{unit}" if unit else "kgce"
            out.append((f"{name} {t('per_unit', lang)}", f"{p['kgce_per_unit']:,.2f}", per))
            if "level" in p:
                bunit = p["benchmark_unit"]
                if bunit != per:
                    out.append(
                        (
                            f"{name} {t('per_unit', lang)} ({bunit})",
                            f"{p['per_unit_in_benchmark_unit']:,.2f}",
                            bunit,
                        )
                    )
                levels = f"{p['benchmark']:g} / {p['baseline']:g}"
                out.append((f"{name} {t('levels', lang)}", levels, bunit))
                out.append((f"{name} {t('level', lang)}", t(p["level"], lang), ""))
        return out

    def bill_rows(self, lang: str) -> list[tuple[str, str, str]]:
        out: list[tuple[str, str, str]] = []
        for b in self.bills:
            head = f"{t('enterprise', lang)} {b.enterprise} ({b.tariff})"
            # how well the prices are sourced: placeholder prices say so on the report
            out.append((f"{head} {t('tariff_source', lang)}", "", b.tariff_source))
            for p, kwh in b.kwh.items():
                out.append(
                    (
                        f"{head} {t(p, lang)}",
                        f"{kwh:,.0f} kWh",
                        f"{b.energy_charge[p]:,.2f} {b.currency}",
                    )
                )
            if b.max_demand_kw is not None:
                out.append(
                    (
                        f"{head} {t('max_demand_kw', lang)}",
                        f"{b.max_demand_kw:,.1f} kW",
                        f"{b.demand_charge:,.2f} {b.currency}",
                    )
                )
            out.append((f"{head} {t('total', lang)}", "", f"{b.total:,.2f} {b.currency}"))
            out.append(
                (
                    f"{head} {t('shift_savings', lang)} ({100 * b.shift_share:.0f} %)",
                    "",
                    f"{b.shift_savings:,.2f} {b.currency}",
                )
            )
            # what the bill says about itself (a partial month, a contract floor, a tariff
            # version ending within the month)
            out += [(f"{head} {note}", "", "") for note in b.notes]
        out += [(note, "", "") for note in self.bill_notes]
        return out


async def build_report(state: State, park: Park, month: str, enterprise: str | None) -> ReportData:
    summary = await summarize(state, park, month)
    level, sid = ("enterprise", enterprise) if enterprise else ("park", park.park)
    subject = next((s for s in summary.subjects if s.level == level and s.id == sid), None)
    if subject is None:
        raise HTTPException(404, f"unknown enterprise {shown(enterprise)}")
    bills = []
    bill_notes = []
    for e in [enterprise] if enterprise else [e.id for e in park.enterprises]:
        if not park.tariffs.has_electricity(e):
            continue
        try:
            bills.append(await compute_bill(state, park, e, month))
        except HTTPException as exc:
            if exc.status_code != 422:
                raise
            bill_notes.append(str(exc.detail))  # no tariff version in force that month
    a, b = _month_bounds(park, month)
    found = await _rollups(state, park, "day", a, b, {"level": level, "id": sid})
    kwh: dict[int, float] = {}
    co2: dict[int, float] = {}
    for tags, records in found:
        for r in records:
            day = int(r["time"])
            if tags.get("quantity") == "e_kwh" and r.get("value") is not None:
                kwh[day] = kwh.get(day, 0.0) + float(r["value"])
            if r.get("co2_kg") is not None:
                co2[day] = co2.get(day, 0.0) + float(r["co2_kg"])
    first = datetime.fromtimestamp(a / 1000, tz=park.zone)
    days: list[int] = []
    while (on := first + timedelta(days=len(days))).month == first.month:
        # the local day's start as the rollups stamp it (a midnight the clock skips: fold 0
        # is the instant it jumps from)
        days.append(int(datetime(on.year, on.month, on.day, tzinfo=park.zone).timestamp() * 1000))
    return ReportData(
        park,
        month,
        subject,
        summary,
        bills,
        [datetime.fromtimestamp(d / 1000, tz=park.zone).strftime("%m-%d") for d in days],
        [kwh.get(d) for d in days],
        [co2.get(d) for d in days],
        datetime.now(tz=park.zone),
        bill_notes,
    )


def render_csv(data: ReportData, lang: str) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(
        [
            t("park", lang),
            data.park.park,
            t("subject", lang),
            data.subject.id,
            t("month", lang),
            data.month,
        ]
    )
    w.writerow([t("item", lang), t("value", lang), t("unit", lang)])
    for row in data.rows(lang):
        w.writerow([row[0], row[1].replace(",", ""), row[2]])
    w.writerow([])
    w.writerow([t("products", lang)])
    for row in data.product_rows(lang):
        w.writerow([row[0], row[1].replace(",", ""), row[2]])
    w.writerow([])
    w.writerow([t("bill", lang)])
    for row in data.bill_rows(lang):
        w.writerow([row[0], row[1].replace(",", ""), row[2]])
    w.writerow([])
    w.writerow([t("daily_kwh", lang), t("daily_co2", lang), "day"])
    for d, k, c in zip(data.days, data.daily_kwh, data.daily_co2, strict=True):
        w.writerow(["" if k is None else f"{k:.3f}", "" if c is None else f"{c:.3f}", d])
    # a byte-order mark so spreadsheet programs read the Chinese labels as UTF-8
    return ("\ufeff" + buf.getvalue()).encode("utf-8")


def _svg_bars(labels: list[str], values: list[float | None], colour: str) -> str:
    width, height, pad = 720, 180, 30
    known = [v for v in values if v is not None]
    if not known:
        return "<p>—</p>"
    top = max(known) or 1.0
    bar = (width - 2 * pad) / len(values)
    parts = [f'<svg width="{width}" height="{height + 30}" xmlns="http://www.w3.org/2000/svg">']
    for i, (label, v) in enumerate(zip(labels, values, strict=True)):
        x = pad + i * bar
        if v is not None:  # a day without data has no bar, not a bar of zero
            h = (height - pad) * v / top
            parts.append(
                f'<rect x="{x:.1f}" y="{height - h:.1f}" width="{max(bar - 2, 1):.1f}" '
                f'height="{h:.1f}" fill="{colour}"><title>{html.escape(label)}: {v:,.1f}</title>'
                "</rect>"
            )
        if i % max(1, len(values) // 10) == 0:
            parts.append(
                f'<text x="{x:.1f}" y="{height + 15}" font-size="10">{html.escape(label)}</text>'
            )
    parts.append(f'<text x="{pad}" y="12" font-size="10">max {top:,.1f}</text></svg>')
    return "".join(parts)


def render_html(data: ReportData, lang: str) -> bytes:
    e = html.escape
    s = data.subject
    rows = "".join(
        f"<tr><td>{e(a)}</td><td class=n>{e(b)}</td><td>{e(c)}</td></tr>"
        for a, b, c in data.rows(lang)
    )
    product_rows = "".join(
        f"<tr><td>{e(a)}</td><td class=n>{e(b)}</td><td>{e(c)}</td></tr>"
        for a, b, c in data.product_rows(lang)
    )
    bill_rows = "".join(
        f"<tr><td>{e(a)}</td><td class=n>{e(b)}</td><td class=n>{e(c)}</td></tr>"
        for a, b, c in data.bill_rows(lang)
    )
    generated = data.generated.isoformat(timespec="minutes")
    doc = f"""<!doctype html><html lang="{lang}"><head><meta charset="utf-8">
<title>{e(t("title", lang))} {e(data.month)} {e(s.name)}</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}td,th{{padding:.2em .6em;
border-bottom:1px solid #ddd}}.n{{text-align:right}}table{{border-collapse:collapse}}</style>
</head><body>
<h1>{e(t("title", lang))} · {e(data.month)}</h1>
<p>{e(t("park", lang))}: {e(data.park.name or data.park.park)} · {e(t("subject", lang))}:
{e(s.name)} ({e(s.id)}) · {e(t("generated", lang))}: {e(generated)}</p>
<table><tr><th>{e(t("item", lang))}</th><th>{e(t("value", lang))}</th>
<th>{e(t("unit", lang))}</th></tr>{rows}</table>
<h2>{e(t("products", lang))}</h2><table>{product_rows}</table>
<h2>{e(t("daily_kwh", lang))}</h2>{_svg_bars(data.days, data.daily_kwh, "#3b7dd8")}
<h2>{e(t("daily_co2", lang))}</h2>{_svg_bars(data.days, data.daily_co2, "#8a8a8a")}
<h2>{e(t("bill", lang))}</h2><table>{bill_rows}</table>
</body></html>"""
    return doc.encode("utf-8")


def cjk_font() -> Path | None:
    return next((p for p in CJK_FONTS if p.is_file()), None)


def render_pdf(data: ReportData, lang: str) -> bytes:
    from fpdf import FPDF

    pdf = FPDF(orientation="P", unit="mm", format="A4")
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()
    font = cjk_font()
    if font is not None:
        pdf.add_font("cjk", "", str(font))
        family = "cjk"
        if LATIN_FONT.is_file():
            # Latin text from DejaVu, Chinese from the fallback: each glyph from the font that
            # has it
            pdf.add_font("latin", "", str(LATIN_FONT))
            family = "latin"
            pdf.set_fallback_fonts(["cjk"])
    elif lang == "zh":
        raise HTTPException(503, "no font with Chinese glyphs: install fonts-droid-fallback")
    else:
        family = "helvetica"

    def text(s: str) -> str:
        # the core font has Latin-1 only
        return (
            s
            if font is not None
            else s.replace("₂", "2")
            .replace("³", "3")
            .encode("latin-1", "replace")
            .decode("latin-1")
        )

    s = data.subject
    pdf.set_font(family, size=16)
    pdf.cell(0, 10, text(f"{t('title', lang)} · {data.month}"), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(family, size=10)
    where = f"{t('park', lang)}: {data.park.name or data.park.park}"
    who = f"{t('subject', lang)}: {s.name} ({s.id})"
    pdf.cell(0, 6, text(f"{where}  {who}"), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)
    for a, b, c in data.rows(lang):
        pdf.cell(80, 6, text(a), border="B")
        pdf.cell(40, 6, text(b), border="B", align="R")
        # a long unit (the grid factor's document, value added's source) wraps in its column
        pdf.multi_cell(0, 6, text(c), border="B", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    pdf.cell(0, 6, text(t("products", lang)), new_x="LMARGIN", new_y="NEXT")
    for a, b, c in data.product_rows(lang):
        pdf.cell(100, 6, text(a), border="B")
        pdf.cell(40, 6, text(b), border="B", align="R")
        pdf.cell(0, 6, text(c), border="B", new_x="LMARGIN", new_y="NEXT")
    for title, values, colour in (
        (t("daily_kwh", lang), data.daily_kwh, (59, 125, 216)),
        (t("daily_co2", lang), data.daily_co2, (138, 138, 138)),
    ):
        pdf.ln(4)
        pdf.cell(0, 6, text(title), new_x="LMARGIN", new_y="NEXT")
        _pdf_bars(pdf, values, colour)
    pdf.ln(4)
    pdf.cell(0, 6, text(t("bill", lang)), new_x="LMARGIN", new_y="NEXT")
    for a, b, c in data.bill_rows(lang):
        too_long = pdf.get_string_width(text(a)) > 110 or pdf.get_string_width(text(c)) > 40
        if not b and too_long:
            # a note too long for the columns (a tariff's source, a missing tariff): a block
            line = f"{a}: {c}" if c else a
            pdf.multi_cell(0, 6, text(line), border="B", new_x="LMARGIN", new_y="NEXT")
            continue
        pdf.cell(110, 6, text(a), border="B")
        pdf.cell(30, 6, text(b), border="B", align="R")
        pdf.cell(0, 6, text(c), border="B", align="R", new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


def _pdf_bars(pdf: Any, values: list[float | None], colour: tuple[int, int, int]) -> None:
    x0, y0, w, h = pdf.get_x(), pdf.get_y(), 180.0, 35.0
    known = [v for v in values if v is not None]
    if known:
        top = max(known) or 1.0
        bar = w / len(values)
        pdf.set_fill_color(*colour)
        for i, v in enumerate(values):
            if v is None:
                continue  # no data that day: no bar
            bh = h * v / top
            pdf.rect(x0 + i * bar, y0 + h - bh, max(bar - 0.5, 0.2), bh, style="F")
    pdf.set_y(y0 + h + 2)


# --- the endpoint -----------------------------------------------------------------------------

router = APIRouter(prefix="/parks/{park}", tags=["accounting"])


@router.get("/accounting/report")
async def report(
    state: StateDep,
    park: str,
    month: str,
    enterprise: str | None = None,
    format: Literal["csv", "html", "pdf"] = "html",
    lang: Literal["zh", "en"] = "zh",
) -> Response:
    """The monthly energy report of an enterprise, or of the park without ``enterprise``."""
    p = _park(state, park)
    data = await build_report(state, p, month, enterprise)
    name = f"{park}-{enterprise or 'park'}-{month}-{lang}"
    if format == "csv":
        return Response(
            render_csv(data, lang),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
        )
    if format == "pdf":
        return Response(
            render_pdf(data, lang),
            media_type="application/pdf",
            headers={"Content-Disposition": f'attachment; filename="{name}.pdf"'},
        )
    return Response(render_html(data, lang), media_type="text/html; charset=utf-8")
