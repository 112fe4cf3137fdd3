"""Fixed reference data for the demo: cities, catalog, brands, vocabularies.

Everything here is static so that the generator only samples; nothing is drawn from Faker per row.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from crm.translit import RUSSIAN_TO_LATIN

PRIVATE_LABEL = "Лично Выбор"


@dataclass(frozen=True)
class City:
    name: str
    time_zone: str
    utc_offset_hours: int  # Russia has had no DST since 2014, so the offset is fixed.
    federal_subject: str
    weight: int  # relative share of clients, roughly the population in 100k
    districts: tuple[str, ...]


CITIES: tuple[City, ...] = (
    City(
        "Москва",
        "Europe/Moscow",
        3,
        "Москва",
        130,
        (
            "Тверской район",
            "Арбат",
            "Хамовники",
            "Басманный район",
            "Пресненский район",
            "Марьино",
            "Южное Бутово",
            "Митино",
            "Выхино-Жулебино",
            "Строгино",
            "Северное Медведково",
            "Люблино",
            "Бибирево",
        ),
    ),
    City(
        "Санкт-Петербург",
        "Europe/Moscow",
        3,
        "Санкт-Петербург",
        56,
        (
            "Адмиралтейский район",
            "Василеостровский район",
            "Выборгский район",
            "Калининский район",
            "Кировский район",
            "Красногвардейский район",
            "Московский район",
            "Невский район",
            "Петроградский район",
            "Приморский район",
            "Фрунзенский район",
            "Центральный район",
        ),
    ),
    City(
        "Казань",
        "Europe/Moscow",
        3,
        "Республика Татарстан",
        13,
        (
            "Авиастроительный район",
            "Вахитовский район",
            "Кировский район",
            "Московский район",
            "Ново-Савиновский район",
            "Приволжский район",
            "Советский район",
        ),
    ),
    City(
        "Нижний Новгород",
        "Europe/Moscow",
        3,
        "Нижегородская область",
        12,
        (
            "Автозаводский район",
            "Канавинский район",
            "Ленинский район",
            "Московский район",
            "Нижегородский район",
            "Приокский район",
            "Советский район",
            "Сормовский район",
        ),
    ),
    City(
        "Калининград",
        "Europe/Kaliningrad",
        2,
        "Калининградская область",
        5,
        ("Ленинградский район", "Московский район", "Центральный район"),
    ),
    City(
        "Самара",
        "Europe/Samara",
        4,
        "Самарская область",
        11,
        (
            "Железнодорожный район",
            "Кировский район",
            "Красноглинский район",
            "Куйбышевский район",
            "Ленинский район",
            "Октябрьский район",
            "Промышленный район",
            "Самарский район",
            "Советский район",
        ),
    ),
    City(
        "Екатеринбург",
        "Asia/Yekaterinburg",
        5,
        "Свердловская область",
        15,
        (
            "Академический район",
            "Верх-Исетский район",
            "Железнодорожный район",
            "Кировский район",
            "Ленинский район",
            "Октябрьский район",
            "Орджоникидзевский район",
            "Чкаловский район",
        ),
    ),
    City(
        "Пермь",
        "Asia/Yekaterinburg",
        5,
        "Пермский край",
        10,
        (
            "Дзержинский район",
            "Индустриальный район",
            "Кировский район",
            "Ленинский район",
            "Мотовилихинский район",
            "Орджоникидзевский район",
            "Свердловский район",
        ),
    ),
    City(
        "Омск",
        "Asia/Omsk",
        6,
        "Омская область",
        11,
        (
            "Кировский округ",
            "Ленинский округ",
            "Октябрьский округ",
            "Советский округ",
            "Центральный округ",
        ),
    ),
    City(
        "Новосибирск",
        "Asia/Novosibirsk",
        7,
        "Новосибирская область",
        16,
        (
            "Дзержинский район",
            "Железнодорожный район",
            "Заельцовский район",
            "Калининский район",
            "Кировский район",
            "Ленинский район",
            "Октябрьский район",
            "Первомайский район",
            "Советский район",
            "Центральный район",
        ),
    ),
    City(
        "Красноярск",
        "Asia/Krasnoyarsk",
        7,
        "Красноярский край",
        11,
        (
            "Железнодорожный район",
            "Кировский район",
            "Ленинский район",
            "Октябрьский район",
            "Свердловский район",
            "Советский район",
            "Центральный район",
        ),
    ),
    City(
        "Иркутск",
        "Asia/Irkutsk",
        8,
        "Иркутская область",
        6,
        ("Кировский район", "Куйбышевский район", "Ленинский район", "Октябрьский район"),
    ),
    City(
        "Владивосток",
        "Asia/Vladivostok",
        10,
        "Приморский край",
        6,
        (
            "Ленинский район",
            "Первомайский район",
            "Первореченский район",
            "Советский район",
            "Фрунзенский район",
        ),
    ),
)


@dataclass(frozen=True)
class CategorySpec:
    slug: str
    name: str
    parent: str | None = None
    sensitive: bool = False


# Parents before children: ids are assigned in this order.
CATEGORIES: tuple[CategorySpec, ...] = (
    CategorySpec("pets", "Зоотовары"),
    CategorySpec("cat-food", "Корм для кошек", "pets"),
    CategorySpec("cat-dry-food", "Сухой корм для кошек", "cat-food"),
    CategorySpec("cat-wet-food", "Влажный корм для кошек", "cat-food"),
    CategorySpec("dog-food", "Корм для собак", "pets"),
    CategorySpec("baby", "Детские товары"),
    CategorySpec("diapers", "Подгузники", "baby"),
    CategorySpec("baby-food", "Детское питание", "baby"),
    CategorySpec("electronics", "Электроника"),
    CategorySpec("smartphones", "Смартфоны", "electronics"),
    CategorySpec("power-banks", "Внешние аккумуляторы", "electronics"),
    CategorySpec("laptops", "Ноутбуки", "electronics"),
    CategorySpec("laptop-bags", "Сумки и рюкзаки для ноутбуков", "electronics"),
    CategorySpec("gaming", "Игровая периферия"),
    CategorySpec("gaming-mice", "Игровые мыши", "gaming"),
    CategorySpec("gaming-keyboards", "Игровые клавиатуры", "gaming"),
    CategorySpec("gaming-chairs", "Игровые кресла", "gaming"),
    CategorySpec("diy", "Инструменты и ремонт"),
    CategorySpec("power-tools", "Электроинструмент", "diy"),
    CategorySpec("hand-tools", "Ручной инструмент", "diy"),
    CategorySpec("cosmetics", "Косметика"),
    CategorySpec("face-care", "Уход за лицом", "cosmetics"),
    CategorySpec("hair-care", "Уход за волосами", "cosmetics"),
    CategorySpec("pharmacy", "Аптека"),
    CategorySpec("vitamins", "Витамины и БАДы", "pharmacy"),
    CategorySpec("intimate-health", "Интимное здоровье", "pharmacy", sensitive=True),
)


@dataclass(frozen=True)
class ProductSpec:
    """Products of one leaf category: ``count`` names built from brand, kind and variant."""

    sku_prefix: str
    count: int
    brands: tuple[str, ...]
    kinds: tuple[str, ...]
    variants: tuple[str, ...] = ()
    price_rub: tuple[int, int] = (100, 1000)
    # Brand-specific models (electronics): brand -> (model, price in roubles).
    models: dict[str, tuple[tuple[str, int], ...]] = field(default_factory=dict)


PL = PRIVATE_LABEL

PRODUCTS: dict[str, ProductSpec] = {
    "cat-dry-food": ProductSpec(
        "CDF",
        30,
        ("Purina One", "Royal Canin", "Whiskas", "Hill's", "Pro Plan", PL),
        (
            "Сухой корм для взрослых кошек",
            "Сухой корм для стерилизованных кошек",
            "Сухой корм для котят",
            "Сухой корм для кошек с чувствительным пищеварением",
        ),
        ("с курицей, 1,5 кг", "с лососем, 1,5 кг", "с индейкой, 3 кг", "с говядиной, 400 г"),
        (250, 4500),
    ),
    "cat-wet-food": ProductSpec(
        "CWF",
        24,
        ("Whiskas", "Felix", "Sheba", "Royal Canin", "Purina One", PL),
        ("Влажный корм для кошек", "Паучи для кошек", "Консервы для кошек"),
        (
            "кусочки в соусе с курицей, 85 г",
            "паштет с говядиной, 85 г",
            "в желе с лососем, 75 г",
            "ассорти, 12 шт. по 85 г",
        ),
        (35, 900),
    ),
    "dog-food": ProductSpec(
        "DGF",
        20,
        ("Pedigree", "Royal Canin", "Pro Plan", "Chappi", PL),
        (
            "Сухой корм для собак мелких пород",
            "Сухой корм для собак крупных пород",
            "Влажный корм для собак",
        ),
        ("с говядиной, 2 кг", "с курицей, 12 кг", "с ягнёнком и рисом, 3 кг", "с индейкой, 400 г"),
        (200, 6000),
    ),
    "diapers": ProductSpec(
        "DPR",
        20,
        ("Pampers", "Huggies", "Merries", "Lovular", PL),
        ("Подгузники", "Трусики-подгузники"),
        (
            "размер 2 (4–8 кг), 66 шт.",
            "размер 3 (6–10 кг), 52 шт.",
            "размер 4 (9–14 кг), 46 шт.",
            "размер 5 (11–16 кг), 42 шт.",
        ),
        (900, 2400),
    ),
    "baby-food": ProductSpec(
        "BBF",
        20,
        ("ФрутоНяня", "Агуша", "Gerber", "HiPP", "Nutrilon"),
        ("Пюре", "Каша безмолочная", "Каша молочная", "Детская смесь"),
        ("яблоко, 90 г", "гречневая, 200 г", "с 6 месяцев, 350 г", "овощное ассорти, 100 г"),
        (50, 1500),
    ),
    "smartphones": ProductSpec(
        "SPH",
        18,
        ("Samsung", "Xiaomi", "Apple", "HONOR", "realme"),
        ("Смартфон",),
        models={
            "Samsung": (
                ("Galaxy A35 6/128 ГБ", 27990),
                ("Galaxy A55 8/256 ГБ", 38990),
                ("Galaxy S24 8/256 ГБ", 79990),
                ("Galaxy S24 Ultra 12/512 ГБ", 129990),
            ),
            "Xiaomi": (
                ("Redmi 13C 4/128 ГБ", 10990),
                ("Redmi Note 13 8/256 ГБ", 19990),
                ("Redmi Note 13 Pro+ 12/512 ГБ", 37990),
                ("14T 12/256 ГБ", 54990),
            ),
            "Apple": (
                ("iPhone 15 128 ГБ", 79990),
                ("iPhone 15 Pro 256 ГБ", 119990),
                ("iPhone 16 128 ГБ", 89990),
            ),
            "HONOR": (("X8b 8/128 ГБ", 17990), ("200 Pro 12/512 ГБ", 59990)),
            "realme": (("C67 8/256 ГБ", 15990), ("12 Pro+ 12/512 ГБ", 39990)),
        },
    ),
    "power-banks": ProductSpec(
        "PWB",
        14,
        ("Anker", "Xiaomi", "Baseus", PL),
        ("Внешний аккумулятор",),
        ("10000 мА·ч, USB-C", "20000 мА·ч, 22,5 Вт", "5000 мА·ч, MagSafe", "26800 мА·ч, PD 65 Вт"),
        (1200, 7000),
    ),
    "laptops": ProductSpec(
        "LTP",
        16,
        ("Lenovo", "ASUS", "Apple", "HUAWEI", "Acer"),
        ("Ноутбук",),
        models={
            "Lenovo": (
                ('IdeaPad Slim 3 15,6" i5/16/512 ГБ', 54990),
                ('ThinkPad E14 14" R7/16/512 ГБ', 84990),
                ('Legion 5 16" R7/16/1 ТБ RTX 4060', 139990),
            ),
            "ASUS": (
                ('Vivobook 15 15,6" i3/8/256 ГБ', 39990),
                ('Zenbook 14 OLED 14" U7/16/1 ТБ', 104990),
                ('TUF Gaming F15 15,6" i5/16/512 ГБ RTX 4050', 89990),
            ),
            "Apple": (
                ('MacBook Air 13" M2 8/256 ГБ', 94990),
                ('MacBook Air 15" M3 16/512 ГБ', 169990),
            ),
            "HUAWEI": (("MateBook D 16 i5/16/512 ГБ", 64990),),
            "Acer": (('Aspire 3 15,6" R5/8/512 ГБ', 42990), ("Nitro V 15 i5/16/512 ГБ", 82990)),
        },
    ),
    "laptop-bags": ProductSpec(
        "LBG",
        12,
        ("Samsonite", "Targus", "ASUS", PL),
        ("Рюкзак для ноутбука", "Сумка для ноутбука", "Чехол для ноутбука"),
        ('15,6", чёрный', '14", серый', '16", водоотталкивающий'),
        (1500, 9000),
    ),
    "gaming-mice": ProductSpec(
        "GMS",
        14,
        ("Logitech", "Razer", "SteelSeries", "HyperX"),
        ("Игровая мышь",),
        models={
            "Logitech": (
                ("G102 Lightsync", 2290),
                ("G502 HERO", 5490),
                ("G Pro X Superlight", 12990),
            ),
            "Razer": (("DeathAdder V3", 7990), ("Viper Mini", 3490), ("Basilisk V3", 6490)),
            "SteelSeries": (("Rival 3", 3290), ("Aerox 5 Wireless", 9990)),
            "HyperX": (("Pulsefire Haste 2", 4490),),
        },
    ),
    "gaming-keyboards": ProductSpec(
        "GKB",
        12,
        ("Logitech", "Razer", "HyperX", "ASUS"),
        ("Игровая клавиатура",),
        models={
            "Logitech": (("G213 Prodigy", 4990), ("G915 TKL", 19990)),
            "Razer": (("BlackWidow V4", 14990), ("Huntsman Mini", 9990)),
            "HyperX": (("Alloy Origins Core", 8990), ("Alloy Core RGB", 4490)),
            "ASUS": (("ROG Strix Scope II", 12990),),
        },
    ),
    "gaming-chairs": ProductSpec(
        "GCH",
        10,
        ("DXRacer", "ThunderX3", "Cougar", PL),
        ("Игровое кресло",),
        ("чёрно-красное, экокожа", "чёрное, ткань", "серое, сетка", "белое, экокожа"),
        (12000, 60000),
    ),
    "power-tools": ProductSpec(
        "PTL",
        16,
        ("Bosch", "Makita", "DeWALT", "Интерскол"),
        ("Дрель-шуруповёрт аккумуляторная", "Перфоратор", "Ударная дрель", "Лобзик"),
        ("18 В, 2 АКБ, кейс", "12 В, 1 АКБ", "800 Вт", "SDS-plus, 3 Дж"),
        (3000, 25000),
    ),
    "hand-tools": ProductSpec(
        "HTL",
        14,
        ("Bosch", "Makita", "Зубр", PL),
        ("Набор бит", "Набор инструментов", "Лазерный уровень", "Рулетка"),
        ("32 предмета", "108 предметов", "с магнитным держателем", "5 м"),
        (500, 12000),
    ),
    "face-care": ProductSpec(
        "FCE",
        24,
        ("L'Oréal Paris", "Nivea", "Garnier", "La Roche-Posay", PL),
        ("Крем для лица", "Мицеллярная вода", "Сыворотка для лица", "Гель для умывания"),
        (
            "увлажняющий, 50 мл",
            "для чувствительной кожи, 400 мл",
            "с гиалуроновой кислотой, 30 мл",
            "с витамином C, 150 мл",
        ),
        (250, 2500),
    ),
    "hair-care": ProductSpec(
        "HRC",
        16,
        ("L'Oréal Paris", "Nivea", "Garnier", "Pantene", PL),
        ("Шампунь", "Бальзам-ополаскиватель", "Маска для волос"),
        ("для всех типов волос, 400 мл", "для окрашенных волос, 250 мл", "укрепляющий, 300 мл"),
        (200, 1200),
    ),
    "vitamins": ProductSpec(
        "VIT",
        12,
        ("Solgar", "Эвалар", "Супрадин", "Компливит"),
        ("Витамин D3", "Омега-3", "Мультивитамины", "Магний B6"),
        ("60 капсул", "30 таблеток", "90 капсул"),
        (250, 2500),
    ),
    "intimate-health": ProductSpec(
        "INT",
        10,
        ("Durex", "Contex", "Clearblue", "Frautest"),
        ("Презервативы", "Интимный гель-смазка", "Тест на беременность"),
        ("12 шт.", "50 мл", "1 шт."),
        (200, 1500),
    ),
}

INTERESTS: tuple[str, ...] = (
    "Кошки",
    "Собаки",
    "Дети и семья",
    "Смартфоны и гаджеты",
    "Компьютерные игры",
    "Ремонт и DIY",
    "Красота и уход",
    "Спорт и фитнес",
    "Путешествия",
    "Кулинария",
    "Книги",
    "Сад и огород",
    "Рыбалка",
    "Автомобили",
    "Музыка",
    "Кино и сериалы",
    "Фотография",
    "Йога",
    "Бег",
    "Здоровое питание",
)

OCCUPATIONS: tuple[str, ...] = (
    "менеджер по продажам",
    "инженер",
    "программист",
    "бухгалтер",
    "учитель",
    "врач",
    "медсестра",
    "водитель",
    "предприниматель",
    "студент",
    "пенсионер",
    "дизайнер",
    "юрист",
    "экономист",
    "продавец-консультант",
    "маркетолог",
    "строитель",
    "электрик",
    "повар",
    "логист",
    "госслужащий",
    "аналитик данных",
    "администратор",
    "парикмахер",
)

CAT_NAMES = ("Барсик", "Мурка", "Васька", "Симба", "Пушок", "Муся", "Кекс", "Соня", "Тимофей")
DOG_NAMES = ("Шарик", "Бобик", "Рекс", "Джек", "Лайма", "Найда", "Граф", "Булька", "Арчи")
OTHER_PET_NAMES = ("Кеша", "Гоша", "Немо", "Хома", "Тортилла", "Пух", "")

EMAIL_DOMAINS = ("mail.ru", "yandex.ru", "gmail.com", "bk.ru", "list.ru", "inbox.ru", "rambler.ru")

STORE_KINDS = ("ТЦ «Мега»", "ТЦ «Галерея»", "ул. Ленина", "ТРК «Июнь»", "пр. Мира", "ТЦ «Европа»")

# Wording versions of the consent text and the day (ISO) each took effect.
CONSENT_WORDINGS: tuple[tuple[str, str], ...] = (
    ("2023-07", "2000-01-01"),
    ("2024-01", "2024-01-15"),
    ("2025-03", "2025-03-01"),
)

TIERS: tuple[tuple[str, int, int, int, str], ...] = (
    # name, rank, qualifying spend (roubles), earn rate (% of spend), benefit
    ("Базовый", 0, 0, 1, "1 балл за каждые 100 ₽ покупок, подарок в день рождения."),
    (
        "Серебряный",
        1,
        30_000,
        3,
        "3 балла за каждые 100 ₽, ранний доступ к распродажам.",
    ),
    (
        "Золотой",
        2,
        100_000,
        5,
        "5 баллов за каждые 100 ₽, бесплатная доставка, персональные предложения.",
    ),
    (
        "Платиновый",
        3,
        300_000,
        7,
        "7 баллов за каждые 100 ₽, личный менеджер, бесплатная доставка в день заказа.",
    ),
)


def translit(text: str) -> str:
    """Latin spelling of a Russian name for e-mail addresses (lowercase ASCII letters only)."""
    out = "".join(RUSSIAN_TO_LATIN.get(ch, ch) for ch in text.lower())
    return "".join(ch for ch in out if "a" <= ch <= "z")
