"""PII redaction of Chinese and English dialogs: checksums, each kind, and canary dialogs."""

from __future__ import annotations

import re

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from clawfed.privacy import PLACEHOLDERS, PiiKind, find_pii, redact
from clawfed.privacy.pii_rules import (
    id_card_check_char,
    id_card_valid,
    luhn_check_digit,
    luhn_valid,
)


def make_id(region: str = "110105", born: str = "19850612", seq: str = "123") -> str:
    body = region + born + seq
    return body + id_card_check_char(body)


def make_card(prefix: str = "622202", length: int = 19, fill: str = "4839201746") -> str:
    body = (prefix + fill * 3)[: length - 1]
    return body + luhn_check_digit(body)


def kinds(text: str) -> list[tuple[PiiKind, str]]:
    return [(f.kind, text[f.start : f.end]) for f in find_pii(text)]


# -- checksums ------------------------------------------------------------------------------


def test_published_id_checksum_example() -> None:
    # GB 11643-1999's worked example: 11010519491231002 has the check character X
    assert id_card_check_char("11010519491231002") == "X"
    assert id_card_valid("11010519491231002X")
    assert id_card_valid("11010519491231002x")
    assert not id_card_valid("110105194912310021")


@settings(max_examples=200, deadline=None)
@given(
    region=st.from_regex(r"[1-9][0-9]{5}", fullmatch=True),
    born=st.dates(min_value=__import__("datetime").date(1900, 1, 1)),
    seq=st.from_regex(r"[0-9]{3}", fullmatch=True),
)
def test_id_with_its_check_character_is_valid_and_any_other_is_not(
    region: str, born: object, seq: str
) -> None:
    body = region + born.strftime("%Y%m%d") + seq  # type: ignore[attr-defined]
    good = body + id_card_check_char(body)
    assert id_card_valid(good)
    for other in "0123456789X":
        if other != good[-1]:
            assert not id_card_valid(body + other)


def test_id_with_an_impossible_birth_date_is_not_an_id() -> None:
    body = "110105" + "19850231" + "123"  # 31 February
    assert not id_card_valid(body + id_card_check_char(body))


@settings(max_examples=200, deadline=None)
@given(
    body=st.from_regex(r"[0-9]{12,18}", fullmatch=True), pos=st.integers(0, 18), d=st.integers(1, 9)
)
def test_luhn_catches_every_single_digit_error(body: str, pos: int, d: int) -> None:
    number = body + luhn_check_digit(body)
    assert luhn_valid(number)
    i = pos % len(number)
    wrong = number[:i] + str((int(number[i]) + d) % 10) + number[i + 1 :]
    assert not luhn_valid(wrong)


def test_known_luhn_numbers() -> None:
    assert luhn_valid("4539148803436467")  # a published Visa test number
    assert luhn_valid("79927398713")
    assert not luhn_valid("79927398710")
    assert not luhn_valid("12a4")


# -- each kind ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "phone",
    [
        "13812345678",
        "138-1234-5678",
        "138 1234 5678",
        "+86 13812345678",
        "+86-139-1234-5678",
        "(+86)15912345678",
        "008618612345678",
    ],
)
def test_mobile_numbers_in_many_forms(phone: str) -> None:
    text = f"请拨打{phone}联系我"
    assert kinds(text) == [(PiiKind.MOBILE, phone)]
    assert redact(text).text == "请拨打[手机号]联系我"


@pytest.mark.parametrize(
    "phone", ["010-12345678", "(021)87654321", "0755 2345 6789", "0571-8765432"]
)
def test_landlines_with_area_codes(phone: str) -> None:
    assert kinds(f"办公电话 {phone}。") == [(PiiKind.LANDLINE, phone)]


def test_landline_extension_is_part_of_the_number() -> None:
    assert kinds("总机010-62345678转8021") == [(PiiKind.LANDLINE, "010-62345678转8021")]


def test_emails_ids_cards_and_ips() -> None:
    card = make_card()
    grouped = " ".join(card[i : i + 4] for i in range(0, len(card), 4))
    idn = make_id()
    text = (
        f"邮箱li.si+vip@bank-example.com.cn，身份证 {idn}，卡号{grouped}，"
        "登录IP 10.2.33.144，以及 2001:db8::8a2e:370:7334。"
    )
    assert kinds(text) == [
        (PiiKind.EMAIL, "li.si+vip@bank-example.com.cn"),
        (PiiKind.ID_CARD, idn),
        (PiiKind.BANK_CARD, grouped),
        (PiiKind.IP_ADDRESS, "10.2.33.144"),
        (PiiKind.IP_ADDRESS, "2001:db8::8a2e:370:7334"),
    ]


def test_numbers_that_are_not_pii_are_left_alone() -> None:
    bad_card = make_card()[:-1] + str((int(make_card()[-1]) + 1) % 10)
    text = (
        f"订单号{bad_card}，金额￥1380.00，日期2024-05-01，时间 12:30:45，"
        "版本 1.2.3.4.5，验证码 123456，工号 10086。"
    )
    assert find_pii(text) == ()


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("王先生您好，请问有什么可以帮您？", "王"),
        ("李小红女士的贷款已经批下来了", "李小红"),
        ("我叫张伟，想咨询信用卡。", "张伟"),
        ("客户欧阳娜娜来电", "欧阳娜娜"),
        ("联系人：陈静", "陈静"),
        ("姓名：赵一鸣", "赵一鸣"),
        ("您好，我姓黄。", "黄"),
        ("刘总让我联系你", "刘"),
    ],
)
def test_chinese_names_next_to_cues(text: str, name: str) -> None:
    assert kinds(text) == [(PiiKind.PERSON_NAME, name)]


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("Hello, my name is Alice Johnson.", "Alice Johnson"),
        ("Mr. Brown approved it", "Brown"),
        ("This is Wei Zhang from the credit team", "Wei Zhang"),
    ],
)
def test_english_names_next_to_cues(text: str, name: str) -> None:
    assert kinds(text) == [(PiiKind.PERSON_NAME, name)]


@pytest.mark.parametrize(
    ("text", "address"),
    [
        (
            "寄到北京市朝阳区建国路88号院3号楼2单元501室。",
            "北京市朝阳区建国路88号院3号楼2单元501室",
        ),
        ("我住在广东省深圳市南山区科技园路1号", "广东省深圳市南山区科技园路1号"),
        ("地址是杭州市西湖区文三路", "杭州市西湖区文三路"),
        ("上海市浦东新区张江路188号", "上海市浦东新区张江路188号"),
        ("送到中山路25号", "中山路25号"),
        ("住在阳光花园小区5栋1单元", "阳光花园小区5栋1单元"),
    ],
)
def test_addresses(text: str, address: str) -> None:
    assert kinds(text) == [(PiiKind.ADDRESS, address)]


def test_generic_place_words_are_not_addresses_but_named_places_are() -> None:
    assert find_pii("我们小区附近的景区很漂亮，网点旁边也很热闹，国内的天气不错。") == ()
    text = "人民路也很热闹，北京市的天气不错，中国的网点都能办。"
    assert kinds(text) == [(PiiKind.ADDRESS, "人民路"), (PiiKind.ADDRESS, "北京市")]


def test_rules_alone_without_the_model() -> None:
    text = "我叫王明，电话13912345678，车牌京A12345"
    assert redact(text, ner=False).text == "我叫[姓名]，电话[手机号]，车牌[车牌]"


def test_kinds_filter_and_findings_carry_no_values() -> None:
    text = "我叫王明，电话13912345678"
    only_phone = redact(text, kinds=[PiiKind.MOBILE])
    assert only_phone.text == "我叫王明，电话[手机号]"
    full = redact(text)
    assert full.counts() == {PiiKind.PERSON_NAME: 1, PiiKind.MOBILE: 1}
    assert "13912345678" not in repr(full.findings) and "王明" not in repr(full.findings)
    assert set(PLACEHOLDERS) == set(PiiKind)


# -- canaries -------------------------------------------------------------------------------

CANARY_PHONE = "13987654321"
CANARY_ID = make_id("330106", "19921103", "457")
CANARY_CARD = make_card("621700", 19, "1357924680")
CANARY_EMAIL = "canary.zhou@claw-bank.cn"
CANARY_NAME = "周金凤"
CANARY_LANDLINE = "0571-88886666"
CANARY_IP = "172.16.254.3"
CANARY_ADDRESS = "浙江省杭州市滨江区江南大道3588号"
CANARY_COMPANY = "杭州云栖数据科技有限公司"
CANARY_PLATE = "浙A·D12345"

DIALOGS = [
    f"客户：你好，我叫{CANARY_NAME}，我的手机是{CANARY_PHONE[:3]}-{CANARY_PHONE[3:7]}-{CANARY_PHONE[7:]}。",
    f"坐席：{CANARY_NAME[0]}女士您好，请提供身份证号码核实身份。",
    f"客户：身份证号是{CANARY_ID}，卡号 {CANARY_CARD[:4]} {CANARY_CARD[4:8]} {CANARY_CARD[8:12]} "
    f"{CANARY_CARD[12:16]} {CANARY_CARD[16:]}。",
    f"客户：账单寄到{CANARY_ADDRESS}，邮箱{CANARY_EMAIL}也可以。",
    f"坐席：好的，我们会致电 {CANARY_LANDLINE} 或 +86 {CANARY_PHONE} 与您确认。",
    f"系统：登录来自 {CANARY_IP}，请留意账户安全。",
    f"Agent: Thanks Ms. Zhou, my name is Kevin Li, I'll email {CANARY_EMAIL} today.",
    f"客户：联系人：{CANARY_NAME}，电话{CANARY_PHONE}",
    f"客户：我在{CANARY_COMPANY}上班，车牌{CANARY_PLATE}。",
]


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def test_no_canary_survives_redaction() -> None:
    for dialog in DIALOGS:
        out = redact(dialog).text
        for canary in (
            CANARY_ID,
            CANARY_EMAIL,
            CANARY_NAME,
            CANARY_IP,
            CANARY_ADDRESS,
            CANARY_COMPANY,
            CANARY_PLATE,
        ):
            assert canary not in out, (canary, out)
        for number in (CANARY_PHONE, CANARY_CARD, CANARY_LANDLINE, CANARY_ID[:17]):
            assert _digits(number) not in _digits(out), (number, out)
        assert "Zhou" not in out and "Kevin" not in out
        assert CANARY_NAME[1:] not in out  # the given name
    joined = redact("\n".join(DIALOGS))
    assert joined.counts()[PiiKind.MOBILE] == 3
    assert {f.kind for f in joined.findings} == set(PiiKind)


def test_redaction_keeps_the_rest_of_the_dialog() -> None:
    out = redact(DIALOGS[0]).text
    assert out == "客户：你好，我叫[姓名]，我的手机是[手机号]。"


#: The identifiers with a fixed shape (the filler text around them is random characters).
PATTERNED = [k for k in PiiKind if k not in (PiiKind.PERSON_NAME, PiiKind.ADDRESS, PiiKind.COMPANY)]
_FILLER = st.text(alphabet="您好请问的是我在吗，。账户信用卡额度谢谢再见", max_size=12)


@settings(max_examples=150, deadline=None)
@given(
    number=st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True),
    sep=st.sampled_from(["", " ", "-"]),
    prefix=st.sampled_from(["", "+86 ", "86-", "0086"]),
    before=_FILLER,
    after=_FILLER,
)
def test_any_mobile_number_in_any_dialog_is_redacted(
    number: str, sep: str, prefix: str, before: str, after: str
) -> None:
    written = prefix + sep.join((number[:3], number[3:7], number[7:]))
    out = redact(before + written + after, kinds=PATTERNED).text
    assert number not in _digits(out)
    assert out == before + "[手机号]" + after


@settings(max_examples=100, deadline=None)
@given(
    body=st.from_regex(r"62[0-9]{14,16}", fullmatch=True),
    grouped=st.booleans(),
    before=_FILLER,
    after=_FILLER,
)
def test_any_bank_card_in_any_dialog_is_redacted(
    body: str, grouped: bool, before: str, after: str
) -> None:
    card = body + luhn_check_digit(body)
    assume(not id_card_valid(card))  # an 18-digit card can also be a valid ID: ID wins
    written = " ".join(card[i : i + 4] for i in range(0, len(card), 4)) if grouped else card
    out = redact(before + "卡号" + written + after, kinds=PATTERNED).text
    assert out == before + "卡号[银行卡号]" + after
