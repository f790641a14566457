"""A synthetic sales-bot scenario: Chinese customer messages of 12 intents at three branches.

Every message is built from hand-written phrasings of its intent (some naming a product
that other intents name too, some followed by a clause of another intent), wrapped in
greetings and filler, with a few wrong labels as from real annotators. Most carry personal
data a real customer would type (a name, a mobile number, an address, sometimes an ID or
card number), so the node must redact before training. The three branches see different
intent mixes (non-IID: a retail branch gets balance and activity questions, a loan centre
repayment and threshold questions, a service hotline complaints and hand-overs).
Generation is deterministic by seed.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import pandas as pd

from clawfed.core import ConfigError
from clawfed.privacy.pii_rules import id_card_check_char, luhn_check_digit

#: The intents, in label order.
INTENTS: tuple[str, ...] = (
    "咨询产品利率",
    "预约开户",
    "询问还款方式",
    "投诉服务质量",
    "查询账户余额",
    "咨询贷款门槛",
    "办理提前还款",
    "修改联系方式",
    "咨询活动权益",
    "转人工服务",
    "拒绝沟通",
    "其他意图",
)

_PHRASES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "咨询产品利率": (
            "三年期定期存款利率是多少", "你们的大额存单现在年化多少", "理财产品收益率大概多少",
            "房贷利率现在是多少", "信用贷的年利率能给到多少", "存一年定期利息怎么算",
            "最近利率有没有上调", "你们的结构性存款收益怎么样", "消费贷利息是多少",
        ),
        "预约开户": (
            "我想预约明天去网点开户", "能帮我约个时间开个储蓄卡吗", "我要开一个新账户，需要预约吗",
            "周六可以去开户吗，帮我预约一下", "想给孩子开个户，怎么预约",
            "预约下周二上午开对公账户",
            "开户需要带什么材料，我想先约个号",
        ),
        "询问还款方式": (
            "贷款有哪些还款方式", "等额本息和等额本金有什么区别", "信用卡可以设置自动还款吗",
            "还款能用支付宝吗", "每个月几号扣款，怎么还", "可以先息后本吗",
            "还款方式能改成按季度吗",
        ),
        "投诉服务质量": (
            "你们客服态度太差了，我要投诉", "上次在网点等了两个小时，太过分了",
            "柜员对我很不耐烦，我要投诉她", "电话一直打不通，服务太差", "你们乱扣费，我要投诉",
            "业务员骗我买理财，必须给个说法", "服务越来越差，我很不满意",
        ),
        "查询账户余额": (
            "帮我查一下卡里还有多少钱", "我的账户余额是多少", "查下余额", "工资到账了吗，还剩多少",
            "帮我看看储蓄卡余额", "我想知道账户里还有多少钱", "查一下信用卡还有多少额度可用",
        ),
        "咨询贷款门槛": (
            "贷款需要什么条件", "月收入八千能贷多少", "个体户能申请经营贷吗",
            "征信有逾期还能贷款吗",
            "申请房贷需要什么资格", "没有社保可以办信用贷吗", "贷款对年龄有要求吗",
        ),
        "办理提前还款": (
            "我想提前还清贷款", "房贷能提前还一部分吗", "提前还款有没有违约金",
            "帮我办一下提前结清",
            "车贷还剩两期，想一次性还完", "怎么申请提前还款", "我要把剩下的本金一次还掉",
        ),
        "修改联系方式": (
            "我换手机号了，帮我改一下", "预留手机号要更新", "我要修改通讯地址", "帮我把邮箱改一下",
            "联系电话变了，怎么修改", "家庭住址搬了，需要变更", "把绑定的手机号换成新的",
        ),
        "咨询活动权益": (
            "现在办卡有什么活动", "积分能兑换什么礼品", "新客户有什么优惠", "信用卡的权益有哪些",
            "满减活动怎么参加", "送的行李箱什么时候寄", "生日有专属福利吗", "机场贵宾厅权益怎么用",
        ),
        "转人工服务": (
            "转人工", "我要找人工客服", "机器人听不懂，帮我转人工", "请让真人来接电话",
            "能不能让客服经理跟我说", "别让机器回答了，我要人工", "帮我接通人工坐席",
        ),
        "拒绝沟通": (
            "不需要，谢谢", "别再给我打电话了", "我没兴趣，不要再联系我", "请把我从名单里删掉",
            "以后不要发短信了", "我很忙，不要推销了", "不用了，挂了",
        ),
        "其他意图": (
            "你们网点几点下班", "附近哪里有ATM", "今天天气怎么样", "你们总部在哪里",
            "外币怎么兑换", "手机银行怎么下载", "周末营业吗", "怎么开通短信通知",
        ),
    }
)  # fmt: skip

#: Phrasings with a product slot: the same products come up under several intents.
_PRODUCT_PHRASES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "咨询产品利率": ("{p}的利率现在多少", "{p}利息高不高", "{p}年化能到多少"),
        "预约开户": ("想约个时间办{p}", "{p}要预约吗，我想这周去办"),
        "询问还款方式": ("{p}每个月怎么还", "{p}可以分期还吗", "{p}的还款日能改吗"),
        "投诉服务质量": ("办{p}的时候被怠慢了，我要投诉", "{p}的事情一直没人管，太差了"),
        "查询账户余额": ("{p}里还剩多少", "查一下{p}的余额"),
        "咨询贷款门槛": ("办{p}需要什么条件", "我这种情况能申请{p}吗"),
        "办理提前还款": ("{p}想提前还掉", "{p}提前还要手续费吗"),
        "修改联系方式": ("{p}上留的电话要改", "{p}的账单地址帮我换一下"),
        "咨询活动权益": ("{p}最近有活动吗", "办{p}送什么"),
        "转人工服务": ("{p}的问题我要找人工", "关于{p}，转个人工吧"),
        "拒绝沟通": ("{p}我不需要，别推了", "不办{p}，别再打了"),
        "其他意图": ("{p}在哪个窗口办", "{p}的宣传单哪里有"),
    }
)
_PRODUCTS = ("信用卡", "房贷", "车贷", "储蓄卡", "理财", "大额存单", "消费贷", "经营贷")
#: Share of messages that add a clause of another intent (the label stays the first one).
MIXED_SHARE = 0.2
#: Share of messages whose label an annotator got wrong (drawn uniformly from the others).
LABEL_NOISE = 0.03

_GREETINGS = ("", "", "您好，", "你好，", "喂，", "在吗？", "请问一下，", "麻烦问下，", "hi，")
_ENDINGS = ("", "", "。", "，谢谢。", "？", "，麻烦尽快。", "，急！", "。谢谢")
_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蒋蔡余杜叶"
_GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰飞红梅鑫斌宇浩凯健俊帆雪琳晨"
_CITIES = (
    ("北京市", ("朝阳区", "海淀区", "东城区")),
    ("上海市", ("浦东新区", "徐汇区", "静安区")),
    ("广东省深圳市", ("南山区", "福田区", "龙岗区")),
    ("浙江省杭州市", ("西湖区", "滨江区", "余杭区")),
    ("四川省成都市", ("武侯区", "锦江区", "高新区")),
)
_ROADS = ("建国路", "中山路", "人民路", "科技园路", "文三路", "天府大道", "解放路", "长江路")
_ESTATES = ("阳光花园", "锦绣家园", "碧水小区", "世纪公寓", "翠苑")


def _name(rng: random.Random) -> str:
    given = "".join(rng.choice(_GIVEN) for _ in range(rng.choice((1, 2))))
    return rng.choice(_SURNAMES) + given


def _mobile(rng: random.Random) -> str:
    digits = rng.choice("3456789") + "".join(rng.choice("0123456789") for _ in range(9))
    number = "1" + digits
    style = rng.random()
    if style < 0.2:
        return f"{number[:3]}-{number[3:7]}-{number[7:]}"
    if style < 0.35:
        return f"{number[:3]} {number[3:7]} {number[7:]}"
    return number


def _address(rng: random.Random) -> str:
    city, districts = rng.choice(_CITIES)
    road = f"{rng.choice(_ROADS)}{rng.randint(1, 999)}号"
    tail = rng.choice(
        ("", f"{rng.choice(_ESTATES)}{rng.randint(1, 20)}栋{rng.randint(101, 2504)}室")
    )
    return f"{city}{rng.choice(districts)}{road}{tail}"


def _id_number(rng: random.Random) -> str:
    body = f"{rng.choice(('110105', '310104', '440305', '330106'))}{rng.randint(1960, 2002)}"
    body += f"{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}{rng.randint(0, 999):03d}"
    return body + id_card_check_char(body)


def _card(rng: random.Random) -> str:
    body = rng.choice(("622202", "621700", "622848")) + "".join(
        rng.choice("0123456789") for _ in range(12)
    )
    return body + luhn_check_digit(body)


@dataclass(frozen=True)
class SalesMessage:
    """A generated message, its intent, and the personal data planted in it (for tests)."""

    text: str
    intent: str
    pii: tuple[str, ...]


def make_message(intent: str, rng: random.Random) -> SalesMessage:
    """One customer message of ``intent`` with personal data in it (most of the time)."""
    if intent not in _PHRASES:
        raise ConfigError(f"unknown intent {intent!r}; known: {', '.join(INTENTS)}")
    if rng.random() < 0.4:
        core = rng.choice(_PRODUCT_PHRASES[intent]).format(p=rng.choice(_PRODUCTS))
    else:
        core = rng.choice(_PHRASES[intent])
    if rng.random() < MIXED_SHARE:
        other = rng.choice([i for i in INTENTS if i != intent])
        core += rng.choice(("，另外", "，顺便问下", "，还有就是")) + rng.choice(_PHRASES[other])
    pii: list[str] = []
    parts: list[str] = [rng.choice(_GREETINGS)]
    if rng.random() < 0.7:
        name = _name(rng)
        pii.append(name)
        parts.append(
            rng.choice((f"我是{name}，", f"我叫{name}，", f"{name[0]}先生，", f"客户{name}，"))
        )
        if parts[-1].endswith("先生，"):
            pii[-1] = name[0]
    parts.append(core)
    extras = []
    if rng.random() < 0.6:
        phone = _mobile(rng)
        pii.append(phone)
        extras.append(rng.choice((f"我电话{phone}", f"手机号{phone}", f"回电{phone}")))
    if rng.random() < 0.35:
        address = _address(rng)
        pii.append(address)
        extras.append(rng.choice((f"我住{address}", f"地址是{address}")))
    if rng.random() < 0.1:
        number = _id_number(rng) if rng.random() < 0.5 else _card(rng)
        pii.append(number)
        extras.append(f"证件/卡号{number}")
    rng.shuffle(extras)
    text = "".join(parts) + "".join(f"，{e}" for e in extras) + rng.choice(_ENDINGS)
    label = intent
    if rng.random() < LABEL_NOISE:
        label = rng.choice([i for i in INTENTS if i != intent])
    return SalesMessage(text, label, tuple(pii))


#: Each branch's intent mix (relative weights in ``INTENTS`` order): three different shapes.
BRANCH_MIX: Mapping[str, tuple[float, ...]] = MappingProxyType(
    {
        "retail": (6, 5, 1, 1, 6, 1, 1, 3, 6, 1, 2, 3),
        "loans": (3, 1, 6, 1, 1, 6, 6, 1, 1, 1, 1, 1),
        "hotline": (1, 1, 2, 6, 2, 1, 1, 4, 1, 6, 5, 2),
    }
)


def make_messages(n: int, seed: int, weights: Sequence[float] | None = None) -> list[SalesMessage]:
    """``n`` messages drawn with intent ``weights`` (uniform by default), reproducible by seed.

    Raises
    ------
    ConfigError
        If ``n`` < 1 or the weights are not 12 non-negative numbers with a positive sum.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"n must be an integer >= 1, got {n!r}")
    w = [1.0] * len(INTENTS) if weights is None else [float(x) for x in weights]
    if len(w) != len(INTENTS) or min(w) < 0 or sum(w) <= 0:
        raise ConfigError(
            f"weights must be {len(INTENTS)} non-negative numbers with a positive sum, got {w}"
        )
    rng = random.Random(seed)
    intents = rng.choices(INTENTS, weights=w, k=n)
    return [make_message(intent, rng) for intent in intents]


def branch_messages(branch: str, n: int, seed: int) -> list[SalesMessage]:
    """The messages of ``branch`` (a key of ``BRANCH_MIX``) with its own intent mix."""
    if branch not in BRANCH_MIX:
        raise ConfigError(f"unknown branch {branch!r}; known: {', '.join(BRANCH_MIX)}")
    offset = sorted(BRANCH_MIX).index(branch)
    return make_messages(n, seed * 1009 + offset, BRANCH_MIX[branch])


def frame_of(messages: Sequence[SalesMessage]) -> pd.DataFrame:
    """Messages as a table with columns ``message`` and ``intent`` (what a branch stores)."""
    return pd.DataFrame(
        {"message": [m.text for m in messages], "intent": [m.intent for m in messages]}
    )


def write_salesbot_scenario(
    folder: Path, rows_per_branch: int = 600, seed: int = 0, holdout_rows: int = 600
) -> dict[str, Path]:
    """Write each branch's CSV and dataset spec (redacting its ``message``), plus a test set.

    Returns
    -------
    dict
        ``branch -> spec path`` for every branch, and ``"test"`` -> a balanced CSV drawn
        from another seed (for the pooled-versus-federated comparison).
    """
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    for branch in BRANCH_MIX:
        csv = folder / f"{branch}.csv"
        frame_of(branch_messages(branch, rows_per_branch, seed)).to_csv(csv, index=False)
        spec = folder / f"{branch}.dataset.yaml"
        spec.write_text(
            f"name: intents\nsource: {{kind: csv, path: {csv.name}}}\ntarget: intent\n"
            "features: [message]\ntext_column: message\nredact: true\ntask: multiclass\n",
            encoding="utf-8",
        )
        out[branch] = spec
    test = folder / "test.csv"
    frame_of(make_messages(holdout_rows, seed + 7919)).to_csv(test, index=False)
    out["test"] = test
    return out
