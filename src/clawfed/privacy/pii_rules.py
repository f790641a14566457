"""Checksums and word lists behind PII detection: ID-card and Luhn checks, surnames, places."""

from __future__ import annotations

from datetime import date

#: ISO 7064 MOD 11-2 weights of the first 17 digits of a resident ID (2^(17-i) mod 11).
_ID_WEIGHTS = tuple(pow(2, 17 - i, 11) for i in range(17))
_ID_CHECK = "10X98765432"  # check character for (weighted sum mod 11) = 0, 1, …, 10

#: Common single-character Chinese surnames (the most frequent ~200; covers the bulk of people).
SINGLE_SURNAMES = frozenset(
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程"
    "苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝"
    "龚邵万钱严覃武戴莫孔向汤常温康施文牛樊葛邢安齐易乔伍庞颜倪庄聂章鲁岳翟殷詹申欧耿关兰焦俞"
    "左柳甘祝包宁尚符舒阮柯纪梅童凌毕单季裴霍涂成苗谷盛曲翁冉骆蓝路游辛靳管柴蒙鲍华喻祁蒲房滕"
    "屈饶解牟艾尤阳时穆农司卓古吉缪简车项连芦麦褚娄窦戚岑景党宫费卜冷晏席卫米柏宗瞿桂全佟应臧"
    "闵苟邬边卞姬师和仇栾隋商刁沙荣巫寇桑郎甄丛仲虞敖巩明佘池查麻苑迟邝"
)
#: Common two-character (compound) surnames.
COMPOUND_SURNAMES = frozenset(
    {
        "欧阳", "司马", "上官", "诸葛", "东方", "皇甫", "尉迟", "公孙", "慕容", "长孙",
        "宇文", "司徒", "夏侯", "轩辕", "令狐", "端木", "独孤", "南宫", "西门", "呼延",
    }
)  # fmt: skip

#: Province-level divisions, short names (the suffix 省/市/自治区… is optional in text).
PROVINCES = (
    "北京", "天津", "上海", "重庆", "河北", "山西", "辽宁", "吉林", "黑龙江", "江苏", "浙江",
    "安徽", "福建", "江西", "山东", "河南", "湖北", "湖南", "广东", "海南", "四川", "贵州",
    "云南", "陕西", "甘肃", "青海", "台湾", "内蒙古", "广西", "西藏", "宁夏", "新疆", "香港",
    "澳门",
)  # fmt: skip

#: Characters that never occur inside a place name here but often just before one
#: ("我住在…", "地址是…", "寄到…"), so an address match may not start with them.
PLACE_STOP_CHARS = "我你您他她它们在住是的到寄送址为与及把给请帮要想就都也还很个"


def id_card_valid(candidate: str) -> bool:
    """Whether ``candidate`` is an 18-character resident ID with a valid checksum and date.

    The 18th character is the ISO 7064 MOD 11-2 check (``X`` for 10) of the first 17
    digits; characters 7-14 must be a real birth date from 1900 on.
    """
    if len(candidate) != 18 or not candidate[:17].isdigit():
        return False
    check = candidate[17].upper()
    total = sum(int(d) * w for d, w in zip(candidate[:17], _ID_WEIGHTS, strict=True))
    if _ID_CHECK[total % 11] != check:
        return False
    if candidate[0] == "0":
        return False
    try:
        born = date(int(candidate[6:10]), int(candidate[10:12]), int(candidate[12:14]))
    except ValueError:
        return False
    return born.year >= 1900


def id_card_check_char(first17: str) -> str:
    """The check character completing the 17 digits ``first17`` (for tests and fixtures)."""
    if len(first17) != 17 or not first17.isdigit():
        raise ValueError(f"need 17 digits, got {len(first17)} character(s)")
    return _ID_CHECK[sum(int(d) * w for d, w in zip(first17, _ID_WEIGHTS, strict=True)) % 11]


def luhn_valid(digits: str) -> bool:
    """Whether the digit string passes the Luhn (mod 10) check used by bank cards."""
    if not digits.isdigit() or len(digits) < 2:
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def luhn_check_digit(body: str) -> str:
    """The digit that makes ``body + digit`` pass the Luhn check (for tests and fixtures)."""
    for d in "0123456789":
        if luhn_valid(body + d):
            return d
    raise ValueError("body must be digits")  # unreachable for a digit string


# -- word lists of the named-entity rules (pii_ner / pii) ----------------------------------

#: One-character province abbreviations that start a licence plate (GA 36-2018).
PLATE_PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"

#: Words after a surname that make it a name (王先生, 李经理); stripped from a model's PER span.
HONORIFICS = (
    "先生", "女士", "小姐", "总", "经理", "老师", "主任", "阿姨", "叔叔", "师傅", "同学",
    "老板", "大哥", "大姐", "主管", "大爷", "大妈", "奶奶", "爷爷", "律师", "医生", "教授",
    "行长", "科长", "处长", "局长", "董", "工",
)  # fmt: skip
#: Prefixes of familiar address (小李, 老王, 阿珍) stripped from a model's PER span.
NAME_PREFIXES = ("小", "老", "阿")

#: Place names too coarse to identify anyone (countries, continents, "domestic").
COARSE_PLACES = frozenset(
    {
        "中国", "中华人民共和国", "全国", "国内", "国外", "海外", "境内", "境外", "美国",
        "英国", "法国", "德国", "日本", "韩国", "俄罗斯", "加拿大", "澳大利亚", "新加坡",
        "意大利", "西班牙", "印度", "泰国", "越南", "马来西亚", "亚洲", "欧洲", "非洲",
        "美洲", "大陆", "内地", "本地", "当地", "外地", "老家", "家乡",
    }
)  # fmt: skip

#: Organisation words that name no particular organisation (本行, 开户行, 客服中心 …).
GENERIC_ORGS = frozenset(
    {
        "银行", "本行", "我行", "贵行", "该行", "开户行", "总行", "分行", "支行", "网点",
        "公司", "本公司", "我司", "贵司", "该公司", "集团", "客服中心", "信用卡中心",
        "营业部", "营业厅", "政府", "派出所", "公安局", "法院", "税务局", "医院", "学校",
        "保险公司", "证券公司", "银联", "央行", "人民银行", "监管部门", "工作单位", "单位",
    }
)  # fmt: skip

#: Trailing words that turn a place or name into an organisation (朝阳 + 支行).
ORG_TAILS = ("支行", "分行", "营业部", "分公司", "营业厅", "办事处")

#: Legal forms that end a Chinese company's name, longest first (others come from the model).
ORG_SUFFIXES = ("有限责任公司", "股份有限公司", "有限公司", "分公司", "公司", "集团")
#: Legal forms after which a city prefix is part of the registered name (深圳市…有限公司).
LEGAL_FORMS = ("有限责任公司", "股份有限公司", "有限公司")

#: Well-known organisations whose names carry no suffix (brands, short bank names).
KNOWN_ORGS = frozenset(
    {
        "京东", "字节跳动", "拼多多", "小红书", "饿了么", "美团", "滴滴", "滴滴出行",
        "苏宁易购", "阿里巴巴", "腾讯", "百度", "华为", "小米", "网易", "携程", "快手",
        "蚂蚁集团", "顺丰", "顺丰速运", "中石化", "中石油", "中海油", "国家电网", "中国移动",
        "中国联通", "中国电信", "中国平安", "中国人寿", "格力", "格力电器", "海尔", "美的",
        "比亚迪", "宁德时代", "建行", "工行", "农行", "中行", "交行", "招行", "浦发", "兴业",
        "中信", "光大", "民生", "邮储", "大疆", "海康威视", "联想", "京东方", "万科", "碧桂园",
        "Tencent", "Alibaba", "ByteDance", "Huawei", "Baidu", "Xiaomi", "Microsoft", "Google",
        "Apple", "Amazon", "Meta", "Tesla", "IBM", "Intel", "Oracle", "HSBC", "Citibank",
        "Goldman Sachs", "Morgan Stanley", "JPMorgan", "Standard Chartered", "Deloitte",
        "PwC", "KPMG", "McKinsey", "Lenovo", "JD.com", "Meituan", "Pinduoduo", "DiDi",
    }
)  # fmt: skip

#: Chinese cities, districts and regions as written in English text.
EN_PLACES = frozenset(
    {
        "Beijing", "Shanghai", "Shenzhen", "Guangzhou", "Hangzhou", "Chengdu", "Wuhan",
        "Nanjing", "Tianjin", "Chongqing", "Suzhou", "Xi'an", "Xian", "Changsha", "Qingdao",
        "Dalian", "Xiamen", "Ningbo", "Hefei", "Zhengzhou", "Jinan", "Shenyang", "Harbin",
        "Kunming", "Fuzhou", "Dongguan", "Foshan", "Wuxi", "Hong Kong", "Macau", "Macao",
        "Taipei", "Pudong", "Puxi", "Chaoyang", "Haidian", "Dongcheng", "Xicheng", "Nanshan",
        "Futian", "Luohu", "Tianhe", "Xuhui", "Jing'an", "Huangpu", "Minhang", "Guangdong",
        "Zhejiang", "Jiangsu", "Sichuan", "Hubei", "Hunan", "Fujian", "Shandong", "Henan",
    }
)  # fmt: skip
