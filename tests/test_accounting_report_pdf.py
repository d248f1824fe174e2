"""The monthly report's PDF layout: every line of text stays on the page."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fpdf import FPDF

from api.accounting import SubjectSummary, Summary
from api.reports import ReportData, cjk_font, render_pdf
from parkwatch.site import Park

SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_long_sources_wrap_instead_of_running_off_the_page(
    lang: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if cjk_font() is None:
        pytest.fail("no CJK font: ./run.sh setup installs fonts-droid-fallback")
    park = Park.model_validate({"park": "p", "meters": [{"id": "m", "utility": "electricity"}]})
    subject = SubjectSummary(
        id="p",
        level="park",
        name="p",
        consumption={"e_kwh": 1000.0},
        completeness=1.0,
        estimated_share=0.0,
        tce_equal=0.1229,
        tce_equivalent=0.3055,
        co2_t=0.5227,
        co2_t_market=0.5227,
        electricity_share=1.0,
        value_added_cny=3.1e6,
        # the labels an auditor needs: where value added and the grid factor come from
        value_added_source="entered for the year, allocated pro rata of days (31/365)",
        tce_per_10k_cny=0.1229 / 310,
        water_m3_per_10k_cny=None,
    )
    start = datetime(2025, 7, 1, tzinfo=SHANGHAI)
    summary = Summary(
        park="p",
        period="2025-07",
        start=start,
        end=datetime(2025, 8, 1, tzinfo=SHANGHAI),
        convention="equal",
        grid_factor={
            "id": "mee-2022-chongqing",
            "kg_per_kwh": 0.5227,
            "document": "生态环境部 国家统计局 公告2024年第33号",
        },
        subjects=[subject],
    )
    data = ReportData(park, "2025-07", subject, summary, [], [], [], [])
    overflows: list[str] = []
    original = FPDF.cell

    def cell(
        self: FPDF,
        w: float | None = None,
        h: float | None = None,
        text: str = "",
        *args: Any,
        **kwargs: Any,
    ) -> bool:
        room = (w or 0.0) or (self.w - self.r_margin - self.x)
        if self.get_string_width(text) > room + 0.01:
            overflows.append(text)
        return original(self, w, h, text, *args, **kwargs)

    monkeypatch.setattr(FPDF, "cell", cell)
    assert render_pdf(data, lang).startswith(b"%PDF")
    assert overflows == []
