"""PII detection with the LAC model: plates, companies, places, and the labelled-set targets."""

from __future__ import annotations

from pathlib import Path

import pytest

from clawfed.core import DataError
from clawfed.privacy.pii import PiiKind, find_pii, redact
from clawfed.privacy.pii_ner import NerLabel, entity_spans, split_organization
from clawfed.privacy.pii_quality import load_labelled, overall_precision, score

LABELLED = Path(__file__).parents[1] / "data" / "pii_sentences.yaml"
PATTERNED = (
    PiiKind.EMAIL,
    PiiKind.ID_CARD,
    PiiKind.BANK_CARD,
    PiiKind.MOBILE,
    PiiKind.LANDLINE,
    PiiKind.LICENSE_PLATE,
)
NAMED = (PiiKind.PERSON_NAME, PiiKind.ADDRESS, PiiKind.COMPANY)


def kinds(text: str) -> list[tuple[PiiKind, str]]:
    return [(f.kind, text[f.start : f.end]) for f in find_pii(text)]


@pytest.mark.parametrize("plate", ["京A12345", "粤B·D12345", "沪AD12345", "苏E·F23456", "冀A5K8M2"])
def test_licence_plates_old_and_new_energy(plate: str) -> None:
    assert kinds(f"车牌{plate}能办ETC吗") == [(PiiKind.LICENSE_PLATE, plate)]


@pytest.mark.parametrize("text", ["京A1234", "京I12345", "京A123456789", "型号A12345"])
def test_strings_that_are_not_plates(text: str) -> None:
    assert PiiKind.LICENSE_PLATE not in {f.kind for f in find_pii(f"编号{text}。")}


def test_model_names_places_and_organisations() -> None:
    text = "我叫张三，在上海浦东新区碧波路690号的华为技术有限公司上班"
    spans = {(s.label, text[s.start : s.end]) for s in entity_spans(text)}
    assert (NerLabel.PERSON, "张三") in spans
    assert (NerLabel.PLACE, "上海浦东新区碧波路690号") in spans
    assert (NerLabel.ORGANIZATION, "华为技术有限公司") in spans
    assert entity_spans("no Chinese here, Mr. Brown") == ()


def test_merged_place_and_company_split_into_address_and_company() -> None:
    assert redact("我叫张三，住在北京市海淀区阿里巴巴公司旁边").text == (
        "我叫[姓名]，住在[地址][公司]旁边"
    )
    parts = split_organization("北京市海淀区阿里巴巴公司", 10)
    assert [(p.label, p.start, p.end) for p in parts] == [
        (NerLabel.PLACE, 10, 16),
        (NerLabel.ORGANIZATION, 16, 22),
    ]
    assert [p.label for p in split_organization("深圳市大疆创新科技有限公司", 0)] == [
        NerLabel.ORGANIZATION
    ]
    assert [p.label for p in split_organization("北京银行", 0)] == [NerLabel.ORGANIZATION]
    assert split_organization("开户行", 0) == []


def test_honorifics_stay_and_generic_words_are_kept() -> None:
    assert (
        redact("王先生您好，我是招商银行的客服小李").text
        == "[姓名]先生您好，我是[公司]的客服小[姓名]"
    )
    text = "请问银行的网点在哪里？我们公司和你们银行合作很多年了，中国的客户都知道。"
    assert find_pii(text) == ()


def test_english_companies_places_and_addresses() -> None:
    assert kinds("I work at Goldman Sachs in Hong Kong.") == [
        (PiiKind.COMPANY, "Goldman Sachs"),
        (PiiKind.ADDRESS, "Hong Kong"),
    ]
    assert kinds("I live at 88 Jianguo Road, Chaoyang District, Beijing.") == [
        (PiiKind.ADDRESS, "88 Jianguo Road, Chaoyang District, Beijing")
    ]


def test_labelled_set_is_large_and_well_formed() -> None:
    sentences = load_labelled(LABELLED)
    assert len(sentences) >= 300
    english = [s for s in sentences if not any("\u4e00" <= ch <= "\u9fff" for ch in s.text)]
    assert 20 <= len(english) < len(sentences) / 2
    counts = {k: sum(len(s.entities.get(k, ())) for s in sentences) for k in PiiKind}
    assert all(counts[k] >= 10 for k in (*PATTERNED, *NAMED))
    assert sum(1 for s in sentences if not s.entities) >= 30  # sentences without PII
    assert sum(1 for s in sentences if s.split == "holdout") >= 30


def test_labelled_set_meets_the_recall_and_precision_targets() -> None:
    scores = score(load_labelled(LABELLED))
    for kind in PATTERNED:
        assert scores[kind].recall >= 0.98, (kind, scores[kind])
    for kind in NAMED:
        assert scores[kind].recall >= 0.85, (kind, scores[kind])
    assert overall_precision(scores) >= 0.9


def test_scoring_counts_misses_and_false_findings(tmp_path: Path) -> None:
    path = tmp_path / "set.yaml"
    path.write_text(
        "sentences:\n"
        "  - text: '我叫张伟，电话13812345678'\n"
        "    entities: {person_name: [张伟], mobile: ['13812345678']}\n"
        "  - {text: '你好', entities: {}}\n",
        encoding="utf-8",
    )
    sentences = load_labelled(path)
    only_phone = score(sentences, lambda t: find_pii(t, [PiiKind.MOBILE]))
    assert only_phone[PiiKind.PERSON_NAME].recall == 0.0
    assert only_phone[PiiKind.MOBILE].recall == 1.0
    everything_is_a_name = score(
        sentences, lambda t: [f.__class__(PiiKind.PERSON_NAME, 0, len(t)) for f in find_pii(t)]
    )
    assert everything_is_a_name[PiiKind.PERSON_NAME].precision == 1.0
    assert everything_is_a_name[PiiKind.MOBILE].recall == 0.0
    path.write_text("sentences:\n  - {text: 'abc', entities: {mobile: ['123']}}\n", "utf-8")
    with pytest.raises(DataError, match="not in the text"):
        load_labelled(path)
    path.write_text("sentences:\n  - {text: 'abc', entities: {}, split: test}\n", "utf-8")
    with pytest.raises(DataError, match="split must be tuning or holdout, got 'test'"):
        load_labelled(path)
    path.write_text("sentences:\n  - {text: 'abc', entities: {phone: ['abc']}}\n", "utf-8")
    with pytest.raises(DataError, match="unknown kind 'phone'"):
        load_labelled(path)
