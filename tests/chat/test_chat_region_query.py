"""Regional questions in WeCom answered by a federated query: k suppression, labelled chart."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from chat_retail_support import result_of, running_query, seed_retail
from test_chat_service_support import chat_config

from clawfed.chat.charts import grouped_bar_figure
from clawfed.chat.fake_wecom import FakeWeCom, FakeWeComServer, serve_fake_wecom
from clawfed.chat.local_server import serve_app
from clawfed.chat.nlu import Lang
from clawfed.chat.outbox import Outbox
from clawfed.chat.service import ChatStore, ConfiguredChannels, chat_runtime, create_chat_app
from clawfed.chat.service.app import chat_answerer
from clawfed.chat.service.regional import ALL, RegionView, last_month, render_result
from clawfed.chat.wecom_messages import image_mime
from clawfed.coordinator.query import ErrorQuery
from clawfed.data.retail import RETAIL_REFERENCE_DATE
from clawfed.governance import Database, sqlite_url
from retail_support import JOB, trained_federation

ADMIN, HEAD, EMPLOYEE = "wanglei", "liuyang", "zhaomin"
QUESTION = "对比下华北和西南区域上月销量预测偏差"
OCT = (date(2026, 10, 1), date(2026, 10, 31))


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return trained_federation(tmp_path_factory.mktemp("retail"))


@pytest.fixture()
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(sqlite_url(tmp_path / "coord.db"))
    database.create_all()
    seed_retail(database, tmp_path / "artifacts", [{"销售部": {"mae": 80.0}}])
    yield database
    database.close()


@pytest.fixture()
def wecom() -> Iterator[FakeWeComServer]:
    fake = FakeWeCom(
        users=(ADMIN, HEAD, EMPLOYEE),
        profiles={
            HEAD: {"department": [30], "is_leader_in_dept": [1]},
            EMPLOYEE: {"department": [10], "is_leader_in_dept": [0]},
        },
    )
    with serve_fake_wecom(fake=fake) as running:
        yield running


def _texts(fake: FakeWeCom, user: str) -> list[str]:
    sent = [b for b in fake.accepted("/cgi-bin/message/send") if b["touser"] == user]
    return [b["text"]["content"] for b in sent if b["msgtype"] == "text"]


def test_last_month_of_the_reference_date() -> None:
    r = last_month(RETAIL_REFERENCE_DATE)
    assert (r.start, r.end) == OCT
    assert last_month(date(2026, 1, 9)).start == date(2025, 12, 1)


def test_region_question_through_wecom_suppresses_9_rows_shows_10_and_sends_a_chart(
    wecom: FakeWeComServer, db: Database, federation: Any
) -> None:
    access = {
        "people": {ADMIN: {"role": "data_admin"}},
        "wecom_departments": {10: "销售部", 20: "物流部", 30: "市场部"},
        "entitlements": [JOB],
    }
    config = chat_config(wecom, access=access, today=RETAIL_REFERENCE_DATE.isoformat())
    outbox = Outbox(db, ConfiguredChannels(config), poll_interval=0.05)
    app = create_chat_app(config, ChatStore(db), outbox)
    runtime = chat_runtime(app)
    assert runtime.wait_idle(60)
    outbox.start()
    server = serve_app(app)
    runners, model = federation
    try:
        with running_query(runners, model) as ask:
            chat_answerer(app).regional.ask = ask
            url = f"{server.url}/wecom/callback"
            for user in (ADMIN, HEAD, EMPLOYEE):
                delivery = wecom.fake.post_user_message(url, user, QUESTION)
                assert delivery.reply_fields["Content"] == "收到，正在计算…"
                assert runtime.wait_idle(60) and outbox.wait_idle(30)
    finally:
        server.stop()
        runtime.close()
        outbox.stop()
    fake = wecom.fake
    images = [b for b in fake.accepted("/cgi-bin/message/send") if b["msgtype"] == "image"]
    assert [b["touser"] for b in images] == [ADMIN, HEAD, EMPLOYEE]
    assert image_mime(fake.media(images[0]["image"]["media_id"])) == "image/png"
    [admin] = _texts(fake, ADMIN)
    # 市场部 has 9 rows in 华北 last month (< k = 10: held back), 销售部 exactly 10 in 西南
    assert "已隐藏：市场部·华北" in admin and "k=10" in admin
    assert "销售部：偏差" in admin and "10 行" in admin
    assert "共 45 行" in admin and "共 22 行" in admin  # 华北 20 + 25; 西南 10 + 12
    [head] = _texts(fake, HEAD)
    assert "市场部：偏差" in head and "销售部" not in head and "物流部" not in head
    assert "已隐藏：市场部·华北" in head
    [employee] = _texts(fake, EMPLOYEE)
    assert "共 45 行" in employee and "销售部" not in employee and "已隐藏" not in employee


def test_every_bar_of_the_chart_names_its_department(federation: Any) -> None:
    runners, model = federation
    with running_query(runners, model) as ask:
        result = result_of(ask, ErrorQuery(JOB, ("华东", "华北"), *OCT))
    _, bars = render_result(result, ALL, Lang.ZH)
    assert {(b.group, b.department) for b in bars} == {
        ("华东", "销售部"), ("华东", "物流部"), ("华东", "市场部"),
        ("华北", "销售部"), ("华北", "物流部"),
    }  # fmt: skip
    fig = grouped_bar_figure("偏差", "平均偏差", bars)
    ax = fig.axes[0]
    drawn = [p for c in ax.containers for p in c]
    assert len(drawn) == len(bars)
    labels = [t.get_text() for t in ax.texts]
    for bar in bars:
        assert f"{bar.department}\n{bar.value:+.1f}" in labels
    assert {t.get_text() for t in ax.get_legend().get_texts()} == {"销售部", "物流部", "市场部"}
    _, totals = render_result(result, RegionView(frozenset(), True), Lang.ZH)
    assert {b.department for b in totals} == {"全部部门"}
