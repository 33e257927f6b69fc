"""The static word pools the company generator draws from (see ``generator``).

Company names (English heads, trades and legal forms; Chinese cities, cores and trades; Arabic
names), countries with their places, phone codes and web suffixes, the CRM's users, contact
names and posts, follow-up statuses, products, channels, remarks, groups, origins, archive types,
contact kinds, mail domains, streets, and the table that turns ASCII into full-width letters.
Changing any pool changes every seeded data set.
"""

from __future__ import annotations

EN_HEADS = (
    "Global",
    "Pacific",
    "Atlas",
    "Sunrise",
    "Golden Gate",
    "Blue Ocean",
    "Evergreen",
    "Nordic",
    "Silverline",
    "Prime",
    "United",
    "Delta",
    "Horizon",
    "Apex",
    "Crescent",
    "Northstar",
    "Redwood",
    "Meridian",
    "Summit",
    "Coastal",
    "Royal",
    "Eagle",
    "Orion",
    "Vista",
    "Baltic",
    "Andes",
    "Sahara",
    "Lotus",
    "Falcon",
    "Harbor",
)
EN_TRADES = (
    "Trading",
    "Imports",
    "Industrial Supply",
    "Textiles",
    "Electronics",
    "Machinery",
    "Home Goods",
    "Auto Parts",
    "Lighting",
    "Packaging",
    "Furniture",
    "Hardware",
    "Solar",
    "Medical Supplies",
    "Toys",
    "Garments",
    "Ceramics",
    "Tools",
    "Distribution",
    "Sourcing",
)
EN_FORMS = (
    "Co., Ltd.",
    "LLC",
    "GmbH",
    "S.A.",
    "Inc.",
    "Ltd",
    "Pty Ltd",
    "S.R.L.",
    "B.V.",
    "SARL",
    "Sp. z o.o.",
    "FZE",
    "Corp.",
    "Ltda.",
    "",
    "",
)
ZH_CITIES = (
    "深圳",
    "广州",
    "宁波",
    "义乌",
    "上海",
    "厦门",
    "青岛",
    "苏州",
    "东莞",
    "佛山",
    "杭州",
    "温州",
)
ZH_CORES = (
    "华盛",
    "鑫源",
    "恒达",
    "宏图",
    "联创",
    "金利",
    "东方",
    "顺发",
    "嘉和",
    "永兴",
    "海纳",
    "瑞丰",
)
ZH_TRADES = (
    "贸易",
    "进出口",
    "电子科技",
    "照明电器",
    "五金制品",
    "纺织品",
    "机械设备",
    "包装材料",
    "家居用品",
    "汽车配件",
)
AR_NAMES = ("شركة النور للتجارة", "مؤسسة الخليج للاستيراد", "شركة الأمل التجارية")

# (ISO-2, country_name, timezone, phone country code, web suffix, ((province, city), ...))
COUNTRIES: tuple[tuple[str, str, int, str, str, tuple[tuple[str, str], ...]], ...] = (
    (
        "US",
        "美国",
        -5,
        "1",
        ".com",
        (("California", "Los Angeles"), ("New York", "New York"), ("Texas", "Houston")),
    ),
    ("DE", "德国", 1, "49", ".de", (("Bayern", "München"), ("Hamburg", "Hamburg"))),
    ("GB", "英国", 0, "44", ".co.uk", (("England", "London"), ("England", "Manchester"))),
    ("FR", "法国", 1, "33", ".fr", (("Île-de-France", "Paris"), ("Auvergne-Rhône-Alpes", "Lyon"))),
    ("BR", "巴西", -3, "55", ".com.br", (("São Paulo", "São Paulo"), ("Paraná", "Curitiba"))),
    ("IN", "印度", 5, "91", ".in", (("Maharashtra", "Mumbai"), ("Delhi", "New Delhi"))),
    ("AE", "阿联酋", 4, "971", ".ae", (("Dubai", "Dubai"), ("Sharjah", "Sharjah"))),
    ("SA", "沙特阿拉伯", 3, "966", ".sa", (("Riyadh", "Riyadh"), ("Makkah", "Jeddah"))),
    ("NG", "尼日利亚", 1, "234", ".ng", (("Lagos", "Lagos"), ("", ""))),
    ("MX", "墨西哥", -6, "52", ".mx", (("Jalisco", "Guadalajara"), ("CDMX", "Ciudad de México"))),
    ("RU", "俄罗斯", 3, "7", ".ru", (("Moscow", "Moscow"), ("", "Novosibirsk"))),
    ("AU", "澳大利亚", 10, "61", ".com.au", (("NSW", "Sydney"), ("VIC", "Melbourne"))),
    ("VN", "越南", 7, "84", ".vn", (("", "Ho Chi Minh City"), ("", "Hanoi"))),
    ("TR", "土耳其", 3, "90", ".com.tr", (("İstanbul", "İstanbul"), ("İzmir", "İzmir"))),
    ("PL", "波兰", 1, "48", ".pl", (("Mazowieckie", "Warszawa"), ("", "Kraków"))),
    ("CN", "中国", 8, "86", ".cn", (("广东", "深圳"), ("浙江", "宁波"), ("上海", "上海"))),
    ("HK", "中国香港", 8, "852", ".hk", (("", "Hong Kong"), ("", "Kowloon"))),
)
ARABIC_COUNTRIES = (6, 7)  # indexes of AE, SA
CHINESE_COUNTRIES = (15, 16)  # indexes of CN, HK

USERS: tuple[tuple[int, str], ...] = (
    (55280038, "Lily 王"),
    (55280041, "张伟"),
    (55280052, "Tom Chen"),
    (55280077, "李娜"),
    (55280090, "Kevin"),
    (55280103, "陈静"),
    (55280115, "Amy Liu"),
    (55280126, "王强"),
)
FIRST = (
    "John",
    "Maria",
    "Ahmed",
    "Olga",
    "Carlos",
    "Priya",
    "Hans",
    "Fatima",
    "David",
    "Anna",
    "Mohammed",
    "Lucas",
    "Sofia",
    "Ivan",
    "Emma",
    "Rajesh",
    "Chloe",
    "Mehmet",
    "Nguyen",
    "Jan",
)
LAST = (
    "Smith",
    "Garcia",
    "Al-Rashid",
    "Ivanova",
    "Silva",
    "Sharma",
    "Müller",
    "Hassan",
    "Brown",
    "Kowalski",
    "Rossi",
    "Dubois",
    "Yilmaz",
    "Tran",
    "Okafor",
    "Schmidt",
    "O'Brien",
    "Lopez",
)
ZH_PERSONS = ("王芳", "李强", "张敏", "刘洋", "陈杰", "杨丽", "黄磊", "赵静")
POSTS = (
    "Purchasing Manager",
    "CEO",
    "Buyer",
    "Sourcing Director",
    "Owner",
    "Import Manager",
    "",
    "采购经理",
    "总经理",
    "",
    "Procurement Officer",
)
TRAIL = (
    (0, ""),
    (1101, "新询盘"),
    (1102, "报价中"),
    (1103, "样品阶段"),
    (1104, "已成交"),
    (1105, "流失"),
)
PRODUCTS = (
    "LED灯",
    "Solar panels",
    "不锈钢餐具",
    "Cotton T-shirts",
    "Power tools",
    "汽配刹车片",
    "",
)
CHANNELS = ("广交会", "Alibaba", "Google", "LinkedIn", "老客户介绍", "Trade show (Dubai)", "")
REMARKS = (
    "",
    "",
    "",
    "展会认识的客户，对LED感兴趣",
    "Met at Canton Fair 2023",
    "VIP客户👍",
    "Needs CE certificate",
    "报价已发，等待回复",
    "Pays by L/C only",
    "样品已寄出 DHL",
)
GROUPS = (0, 0, 101, 102, 103, 104)
ORIGINS: tuple[list[int], ...] = ([], [], [1], [2], [4], [1, 8], [2, 9], [3])
ARCHIVE_TYPES = (1, 1, 1, 2, 3, 4, 6, 6, 7)
CONTACT_TYPES = ("linkedin", "whatsapp", "wechat", "skype", "facebook")
FREE_MAIL = ("gmail.com", "yahoo.com", "hotmail.com", "outlook.com")
CN_MAIL = ("qq.com", "163.com", "126.com")
STREETS = ("Main St", "Industrial Ave", "Harbor Rd", "Market Street", "Kingsway", "Al Wasl Rd")

FULLWIDTH = str.maketrans({chr(c): chr(c + 0xFEE0) for c in range(0x21, 0x7F)} | {" ": "\u3000"})
