"""Free-text questions: each intent with its slots, jobs, typos, determinism, lexicon rules."""

from __future__ import annotations

import logging
from datetime import date
from pathlib import Path

import jieba
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from clawfed.chat.nlu import (
    Intent,
    IntentParser,
    LexiconError,
    NluError,
    Slots,
    TimeRange,
    default_lexicon,
    load_lexicon,
    parse_intent,
)
from clawfed.chat.nlu.lexicon import DEFAULT_LEXICON_PATH, parse_lexicon
from clawfed.chat.nlu.text import Tokenizer, normalize

TODAY = date(2026, 11, 24)  # a Tuesday


def ask(text: str) -> tuple[Intent, Slots]:
    p = parse_intent(text, today=TODAY)
    return p.intent, p.slots


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("训练进度怎么样", Intent.TRAINING_PROGRESS),
        ("how is training going", Intent.TRAINING_PROGRESS),
        ("信贷部模型准确率多少", Intent.METRIC_QUERY),
        ("上周哪个部门贡献最大", Intent.CONTRIBUTION_RANKING),
        ("which department contributed most last week", Intent.CONTRIBUTION_RANKING),
        ("对比下华东和华南区域上月销量预测偏差", Intent.COMPARE),
        ("compare east and south china sales forecast error last month", Intent.COMPARE),
        ("质检部节点在线吗", Intent.NODE_STATUS),
        ("有哪些模型版本", Intent.LIST_VERSIONS),
        ("现在有哪些任务", Intent.LIST_JOBS),
        ("谁用了信贷部的模型", Intent.AUDIT_QUERY),
        ("批准反欺诈任务", Intent.APPROVAL),
        ("开始训练反欺诈任务", Intent.START_TRAINING),
        ("你能做什么", Intent.HELP),
        ("中午吃什么", Intent.UNKNOWN),
        ("", Intent.UNKNOWN),
        ("？？？", Intent.UNKNOWN),
    ],
)
def test_brief_examples_get_their_intent(text: str, intent: Intent) -> None:
    assert ask(text)[0] is intent


def test_metric_question_names_department_and_metric() -> None:
    intent, s = ask("信贷部模型准确率多少")
    assert intent is Intent.METRIC_QUERY
    assert (s.department, s.departments, s.metric) == ("credit", ("credit",), "accuracy")
    assert s.job is None and s.region is None and s.time_range is None


def test_compare_regions_keeps_both_in_order_with_metric_and_time() -> None:
    intent, s = ask("对比下华东和华南区域上月销量预测偏差")
    assert intent is Intent.COMPARE
    assert s.regions == ("east", "south") and s.region is None
    assert s.metric == "error"  # 销量 is the subject of the forecast, 偏差 the metric
    assert s.time_range == TimeRange(date(2026, 10, 1), date(2026, 10, 31), "last_month")


def test_compare_in_english_reads_region_names_of_one_and_two_words() -> None:
    intent, s = ask("compare east and south china sales forecast error last month")
    assert (intent, s.regions, s.metric) == (Intent.COMPARE, ("east", "south"), "error")


def test_compare_departments() -> None:
    intent, s = ask("比较信贷部和合规部的准确率")
    assert intent is Intent.COMPARE
    assert s.departments == ("credit", "compliance") and s.department is None


def test_contribution_ranking_with_last_week() -> None:
    intent, s = ask("上周哪个部门贡献最大")
    assert intent is Intent.CONTRIBUTION_RANKING
    assert s.time_range is not None and s.time_range.label == "last_week"
    assert (s.time_range.start, s.time_range.end) == (date(2026, 11, 16), date(2026, 11, 22))


def test_node_status_department() -> None:
    assert ask("质检部节点在线吗") == (Intent.NODE_STATUS, Slots(department="quality"))
    assert ask("is the quality node online") == (Intent.NODE_STATUS, Slots(department="quality"))


def test_audit_question_about_a_department_is_not_the_audit_department() -> None:
    assert ask("谁用了信贷部的模型") == (Intent.AUDIT_QUERY, Slots(department="credit"))
    assert ask("查一下审计日志") == (Intent.AUDIT_QUERY, Slots())
    assert ask("审计部离线了吗") == (Intent.NODE_STATUS, Slots(department="audit"))


@pytest.mark.parametrize(
    ("text", "intent", "job"),
    [
        ("批准反欺诈任务", Intent.APPROVAL, "反欺诈"),
        ("approve the fraud job", Intent.APPROVAL, "fraud"),
        ("approve job Fraud-V2", Intent.APPROVAL, "Fraud-V2"),  # case kept
        ("approve credit-risk", Intent.APPROVAL, "credit-risk"),
        ("同意信贷部的数据用于反欺诈任务", Intent.APPROVAL, "反欺诈"),
        ("反欺诈任务训练进度咋样", Intent.TRAINING_PROGRESS, "反欺诈"),
        ("销量预测任务进展如何", Intent.TRAINING_PROGRESS, "销量预测"),
        ("show model versions for job fraud-v2", Intent.LIST_VERSIONS, "fraud-v2"),
        ("反欺诈模型的召回率是多少", Intent.METRIC_QUERY, "反欺诈"),
    ],
)
def test_job_names(text: str, intent: Intent, job: str) -> None:
    got_intent, s = ask(text)
    assert (got_intent, s.job) == (intent, job)


def test_metric_word_inside_a_job_name_is_not_the_metric() -> None:
    _, s = ask("销量预测任务进展如何")
    assert s.metric is None


def test_typos_and_colloquial_forms() -> None:
    assert ask("信贷部准确律多少") == (
        Intent.METRIC_QUERY,
        Slots(department="credit", metric="accuracy"),
    )
    assert ask("训练咋样了")[0] is Intent.TRAINING_PROGRESS
    assert ask("合规部的召回率是多少啊")[1].metric == "recall"
    assert ask("how is the trainng progres")[0] is Intent.TRAINING_PROGRESS


def test_chinese_trigger_phrases_need_exact_spelling() -> None:
    # "怎么办" is one character from the help phrase "怎么用"; only names forgive typos
    assert ask("打印机坏了怎么办")[0] is Intent.UNKNOWN


def test_mentions_and_full_width_forms_are_ignored() -> None:
    assert ask("@clawfed\u2005训练进度怎么样")[0] is Intent.TRAINING_PROGRESS
    assert ask("ＡＵＣ多少")[1].metric == "auc"


def test_evidence_names_the_trigger_words() -> None:
    p = parse_intent("质检部节点在线吗", today=TODAY)
    assert set(p.evidence) == {"节点", "在线"} and p.score == 4
    assert parse_intent("中午吃什么").evidence == ()


def test_known_jobs_are_found_anywhere_and_spelled_as_registered() -> None:
    parser = IntentParser(known_jobs=["Churn预测", "fraud-v2"], today=lambda: TODAY)
    p = parser.parse("churn预测训练到第几轮了")
    assert (p.intent, p.slots.job) == (Intent.TRAINING_PROGRESS, "Churn预测")
    p = parser.parse("上月信贷部的准确率")  # the injected clock resolves 上月
    assert p.slots.time_range is not None and p.slots.time_range.start == date(2026, 10, 1)


def test_parsing_is_deterministic() -> None:
    texts = ["对比下华东和华南区域上月销量预测偏差", "approve the fraud job", "你好"]
    first = [parse_intent(t, today=TODAY) for t in texts]
    assert [parse_intent(t, today=TODAY) for t in texts] == first


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=40))
def test_any_text_gets_an_answer_never_an_exception(text: str) -> None:
    p = parse_intent(text, today=TODAY)
    assert isinstance(p.intent, Intent)
    assert p.slots.department is None or p.slots.departments == (p.slots.department,)


def test_slots_keep_single_and_plural_fields_consistent() -> None:
    assert Slots(department="credit").departments == ("credit",)
    assert Slots(regions=("east",)).region == "east"
    with pytest.raises(NluError, match="contradicts"):
        Slots(department="credit", departments=("credit", "audit"))
    with pytest.raises(NluError, match="must not repeat"):
        Slots(regions=("east", "east"))


def test_jieba_never_prints(capfd: pytest.CaptureFixture[str]) -> None:
    logging.getLogger("jieba").addHandler(logging.StreamHandler())  # as jieba itself does
    Tokenizer(["信贷部"]).tokenize("信贷部")
    assert capfd.readouterr() == ("", "")
    jieba.dt.check_initialized()
    assert capfd.readouterr() == ("", "")
    assert "质检部" not in jieba.dt.FREQ  # our words stay out of the global jieba dictionary


def test_domain_words_cut_as_one_token() -> None:
    tok = Tokenizer(default_lexicon().words())
    words = [t.text for t in tok.tokenize(normalize("对比下华东和华南区域上月销量预测偏差"))]
    assert "上月" in words and "销量" in words and "华东" in words


def _lexicon_doc() -> dict[str, object]:
    doc = yaml.safe_load(DEFAULT_LEXICON_PATH.read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


def test_lexicon_refuses_an_alias_naming_two_things() -> None:
    doc = _lexicon_doc()
    doc["regions"]["east"]["aliases"].append("信贷部")  # type: ignore[index]
    with pytest.raises(LexiconError, match="'信贷部' belongs to both"):
        parse_lexicon(doc)


def test_lexicon_refuses_unknown_bonus_and_bad_scoring() -> None:
    doc = _lexicon_doc()
    doc["intents"][0]["bonus"] = {"weather": 1}  # type: ignore[index]
    with pytest.raises(LexiconError, match="unknown slot signal 'weather'"):
        parse_lexicon(doc)
    doc = _lexicon_doc()
    doc["scoring"]["threshold"] = 0  # type: ignore[index]
    with pytest.raises(LexiconError, match=r"scoring.threshold must be an integer >= 1, got 0"):
        parse_lexicon(doc)


def test_parser_refuses_a_lexicon_missing_an_intent(tmp_path: Path) -> None:
    doc = _lexicon_doc()
    doc["intents"] = [i for i in doc["intents"] if i["name"] != "help"]  # type: ignore[attr-defined]
    path = tmp_path / "lexicon.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    with pytest.raises(LexiconError, match=r"missing \['help'\]"):
        IntentParser(load_lexicon(path))


def test_load_lexicon_reports_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(LexiconError, match="cannot read lexicon file"):
        load_lexicon(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("departments: [unclosed", encoding="utf-8")
    with pytest.raises(LexiconError, match="not valid YAML"):
        load_lexicon(bad)
