"""Deterministic demo data: one generator feeds every writer, so all backends get identical rows.

Speed matters (a million clients in minutes), so the per-client loop is plain Python over
precomputed pools: money in integer kopecks, times in integer UTC epoch seconds, every value
formatted once into the string both database writers accept. Ids are assigned here, starting at 1,
so rows reference each other without round trips.
"""

from __future__ import annotations

import bisect
import json
import random
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import TypeVar
from zoneinfo import ZoneInfo

from crm.demo import reference as ref
from crm.demo.tables import CATALOG_TABLES, CLIENT_TABLES, Batch, Row, empty_batch

DAY = 86_400
HISTORY_DAYS = 730
_TIME_OF_DAY = [f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}" for s in range(DAY)]

# Russian mobile operator codes (+7 9XX); every number in these ranges is a valid RU mobile.
_MOBILE_CODES = (*range(900, 940), *range(950, 970), *range(977, 990), *range(991, 1000))
_PHONE_SPACE = len(_MOBILE_CODES) * 10_000_000


@dataclass(frozen=True)
class NamePools:
    first: dict[str, tuple[str, ...]]
    middle: dict[str, tuple[str, ...]]
    last: dict[str, tuple[str, ...]]

    @classmethod
    def draw(cls, seed: int, size: int = 2000) -> NamePools:
        """Draw gender-matched Russian names from Faker once; rows then sample these pools."""
        from faker import Faker

        fake = Faker("ru_RU")
        fake.seed_instance(seed)

        def pool(method: str) -> tuple[str, ...]:
            draw = getattr(fake, method)
            return tuple(dict.fromkeys(draw() for _ in range(size)))

        return cls(
            first={"m": pool("first_name_male"), "f": pool("first_name_female")},
            middle={"m": pool("middle_name_male"), "f": pool("middle_name_female")},
            last={"m": pool("last_name_male"), "f": pool("last_name_female")},
        )


def _money(kopecks: int) -> str:
    return f"{kopecks // 100}.{kopecks % 100:02d}"


class DemoGenerator:
    """Generates the catalog once, then clients in chunks, with one seeded random stream."""

    def __init__(
        self,
        *,
        seed: int,
        today: date,
        time_zone: str,
        points_lifetime_days: int = 365,
    ) -> None:
        self.seed = seed
        self.today = today
        self.rng = random.Random(seed)
        self.names = NamePools.draw(seed)
        tz = ZoneInfo(time_zone)
        anchor = datetime.combine(today, time(0), tzinfo=tz)
        self.anchor = int(anchor.timestamp())  # today's midnight in settings.TIME_ZONE
        offset = anchor.utcoffset()
        self.anchor_offset = int(offset.total_seconds()) if offset else 0
        self.points_lifetime = points_lifetime_days * DAY
        self._day_cache: dict[int, str] = {}
        self.next_id: dict[str, int] = {}
        self.clients_done = 0
        self.anchor_str = self.ts(self.anchor)
        # Phone numbers: an affine permutation of the number space keeps them unique.
        self._phone_a = self.rng.randrange(1, _PHONE_SPACE) | 1  # odd; then coprime below
        while _gcd(self._phone_a, _PHONE_SPACE) != 1:
            self._phone_a += 2
        self._phone_b = self.rng.randrange(_PHONE_SPACE)
        self._city_cum = list(_cumulative(c.weight for c in ref.CITIES))
        self._stores = {
            c.name: tuple(f"{c.name}, {kind}" for kind in ref.STORE_KINDS) for c in ref.CITIES
        }

    # Formatting ------------------------------------------------------------------------------

    def ts(self, epoch: int) -> str:
        """UTC 'YYYY-MM-DD HH:MM:SS' for an epoch second (cached per day)."""
        day, sec = divmod(epoch, DAY)
        text = self._day_cache.get(day)
        if text is None:
            text = (date(1970, 1, 1) + timedelta(days=day)).isoformat()
            self._day_cache[day] = text
        return f"{text} {_TIME_OF_DAY[sec]}"

    def _ids(self, table: str, count: int) -> int:
        """Reserve ``count`` ids of ``table``; returns the first."""
        first = self.next_id.get(table, 1)
        self.next_id[table] = first + count
        return first

    # Catalog -----------------------------------------------------------------------------------

    def catalog(self) -> Batch:
        rng = self.rng
        batch = empty_batch(CATALOG_TABLES)
        created = self.ts(self.anchor - HISTORY_DAYS * DAY - 30 * DAY)

        self.interest_ids: dict[str, int] = {}
        for name in ref.INTERESTS:
            iid = self._ids("crm_interest", 1)
            self.interest_ids[name] = iid
            batch["crm_interest"].append((iid, created, created, name))

        self.category_ids: dict[str, int] = {}
        paths: dict[str, str] = {}
        for spec in ref.CATEGORIES:
            cid = self._ids("crm_category", 1)
            parent_id = self.category_ids[spec.parent] if spec.parent else None
            path = f"{paths[spec.parent] if spec.parent else '/'}{cid}/"
            self.category_ids[spec.slug] = cid
            paths[spec.slug] = path
            batch["crm_category"].append(
                (cid, created, created, spec.name, spec.slug, path, spec.sensitive, parent_id)
            )

        brand_ids: dict[str, int] = {}
        for pspec in ref.PRODUCTS.values():
            for brand in (*pspec.brands, *pspec.models):
                if brand not in brand_ids:
                    brand_ids[brand] = self._ids("crm_brand", 1)
                    batch["crm_brand"].append(
                        (brand_ids[brand], created, created, brand, brand == ref.PRIVATE_LABEL)
                    )

        # Product arrays indexed by a product's position (its id is position + 1).
        self.p_id: list[int] = []
        self.p_price: list[int] = []
        self.p_price_str: list[str] = []
        self.leaf: dict[str, list[int]] = {}
        for slug, pspec in ref.PRODUCTS.items():
            positions = self.leaf.setdefault(slug, [])
            for n in range(pspec.count):
                brand = pspec.brands[n % len(pspec.brands)]
                if pspec.models:
                    model, rub = rng.choice(pspec.models[brand])
                    name = f"{pspec.kinds[0]} {brand} {model}"
                    price = rub * 100
                else:
                    kind, variant = rng.choice(pspec.kinds), rng.choice(pspec.variants)
                    name = f"{kind} {brand} {variant}"
                    low, high = pspec.price_rub
                    rub = low + int((high - low) * rng.random() ** 1.5)
                    if brand == ref.PRIVATE_LABEL:
                        rub = max(low, rub * 3 // 4)
                    price = (max(rub, 20) // 10 * 10 - 1) * 100  # 1 499.00 style
                margin = 15 + rng.randrange(31)  # 15..45 %
                cost = price * (100 - margin) // 100
                pid = self._ids("crm_product", 1)
                sku = f"{pspec.sku_prefix}-{pid:05d}"
                in_stock = rng.random() < 0.93
                active = rng.random() < 0.98
                batch["crm_product"].append(
                    (
                        pid,
                        created,
                        created,
                        sku,
                        name,
                        _money(price),
                        _money(cost),
                        in_stock,
                        active,
                        brand_ids[brand],
                        self.category_ids[slug],
                    )
                )
                positions.append(len(self.p_id))
                self.p_id.append(pid)
                self.p_price.append(price)
                self.p_price_str.append(_money(price))

        self.tiers: list[tuple[int, int, int]] = []  # (id, qualifying kopecks, earn rate %)
        for name, rank, spend, rate, benefit in ref.TIERS:
            tid = self._ids("loyalty_tier", 1)
            self.tiers.append((tid, spend * 100, rate))
            batch["loyalty_tier"].append(
                (tid, created, created, name, rank, f"{spend}.00", 365, f"{rate}.00", benefit)
            )
        self.tier_thresholds = [t[1] for t in self.tiers]
        return batch

    # Clients ----------------------------------------------------------------------------------

    def phone(self, n: int) -> str:
        x = (self._phone_a * n + self._phone_b) % _PHONE_SPACE
        code, rest = divmod(x, 10_000_000)
        return f"+7{_MOBILE_CODES[code]}{rest:07d}"

    def clients(self, count: int) -> Batch:
        """The next ``count`` clients with everything that belongs to them.

        A row's id is its table's last id before this chunk plus its position in the chunk.
        """
        batch = empty_batch(CLIENT_TABLES)
        self._base = {table: self.next_id.get(table, 1) - 1 for table in CLIENT_TABLES}
        for _ in range(count):
            self._client(batch)
        for table, rows in batch.items():
            self.next_id[table] = self._base[table] + len(rows) + 1
        return batch

    def _client(self, batch: Batch) -> None:  # noqa: C901 - one client's story, read top-down
        rng = self.rng
        r = rng.random

        def choice(options: Sequence[_T]) -> _T:
            return options[int(r() * len(options))]

        ts = self.ts
        base = self._base
        anchor = self.anchor
        leaf = self.leaf
        p_id, p_price, p_price_str = self.p_id, self.p_price, self.p_price_str

        cid = base["crm_client"] + len(batch["crm_client"]) + 1
        aid = base["loyalty_loyaltyaccount"] + len(batch["loyalty_loyaltyaccount"]) + 1
        self.clients_done += 1

        # Identity and profile ------------------------------------------------------------------
        gender = "f" if r() < 0.54 else "m"
        first = choice(self.names.first[gender])
        middle = choice(self.names.middle[gender]) if r() < 0.93 else ""
        last = choice(self.names.last[gender])
        age = 18 + int(57 * r() ** 1.4)
        today_ord = self.today.toordinal()
        birth = (
            date.fromordinal(today_ord - age * 365 - int(r() * 365)).isoformat()
            if r() < 0.97
            else None
        )
        city = ref.CITIES[bisect.bisect_right(self._city_cum, r() * self._city_cum[-1])]
        district = choice(city.districts)
        tz_shift = (city.utc_offset_hours * 3600) - self.anchor_offset  # local vs settings zone
        phone = self.phone(cid)
        email = ""
        if r() < 0.93:
            fl, ll = ref.translit(first), ref.translit(last)
            pattern = r()
            if pattern < 0.4:
                local = f"{fl}.{ll}{(self.today.year - age) % 100:02d}"
            elif pattern < 0.7:
                local = f"{ll}{cid}"
            else:
                local = f"{fl[:1]}.{ll}{cid % 997}"
            email = f"{local}@{choice(ref.EMAIL_DOMAINS)}".lower()
        pref_channel = _pick(r(), (("sms", 0.4), ("email", 0.65), ("call", 0.75)), "")
        pref_time = _pick(r(), (("morning", 0.15), ("afternoon", 0.35), ("evening", 0.6)), "")
        family = _pick(
            r(),
            (("married", 0.45), ("single", 0.7), ("divorced", 0.8), ("widowed", 0.83)),
            "",
        )
        if age >= 62 and r() < 0.7:
            occupation = "пенсионер"
        elif age < 23 and r() < 0.6:
            occupation = "студент"
        else:
            occupation = choice(ref.OCCUPATIONS) if r() < 0.9 else ""
        education = _pick(
            r(),
            (("higher", 0.45), ("vocational", 0.7), ("secondary", 0.85), ("postgraduate", 0.9)),
            "",
        )
        app_installed = r() < 0.35

        # Activity window, in days before today (1 = yesterday).
        start = 1 + int(r() * (HISTORY_DAYS - 1))
        end = 1 + int(r() * (start - 1)) if r() < 0.25 else 1
        registered = anchor - start * DAY - tz_shift + 9 * 3600 + int(r() * 13 * 3600)
        registered_str = ts(registered)

        # Personas drive pets, children, interests and the purchase patterns.
        has_cat = r() < 0.22
        has_dog = r() < 0.13
        baby_day = int(r() * 1100) if 22 <= age <= 42 and r() < 0.3 else None
        buys_phone = r() < 0.18
        buys_laptop = r() < 0.10
        gamer = r() < (0.3 if gender == "m" and age < 40 else 0.05)
        diy = r() < (0.25 if gender == "m" else 0.06)
        beauty = r() < (0.6 if gender == "f" else 0.12)
        vitamins = r() < 0.15
        intimate = r() < 0.05

        interests: list[str] = []
        if has_cat:
            interests.append("Кошки")
        if has_dog:
            interests.append("Собаки")
        if baby_day is not None:
            interests.append("Дети и семья")
        if buys_phone or buys_laptop:
            interests.append("Смартфоны и гаджеты")
        if gamer:
            interests.append("Компьютерные игры")
        if diy:
            interests.append("Ремонт и DIY")
        if beauty and r() < 0.6:
            interests.append("Красота и уход")
        for _ in range(int(r() * 3)):
            extra = choice(ref.INTERESTS)
            if extra not in interests:
                interests.append(extra)

        attributes = json.dumps(
            {
                "federal_subject": city.federal_subject,
                "loyalty_card": f"7700{cid:08d}",
                "app_installed": app_installed,
            },
            ensure_ascii=False,
        )
        batch["crm_client"].append(
            (
                cid,
                registered_str,
                registered_str,
                f"DEMO-{cid:06d}",
                last,
                first,
                middle,
                gender,
                birth,
                phone,
                email,
                city.name,
                district,
                city.time_zone,
                pref_channel,
                pref_time,
                family,
                occupation,
                education,
                attributes,
                "demo",
                False,
                None,
            )
        )
        rows = batch["crm_client_interests"]
        for name in interests:
            rows.append(
                (
                    base["crm_client_interests"] + len(batch["crm_client_interests"]) + 1,
                    cid,
                    self.interest_ids[name],
                )
            )

        rows = batch["crm_child"]
        year = self.today.year
        if baby_day is not None:
            baby_year = (self.today - timedelta(days=baby_day)).year
            rows.append(
                (
                    base["crm_child"] + len(batch["crm_child"]) + 1,
                    cid,
                    baby_year,
                    "f" if r() < 0.49 else "m",
                )
            )
        if family == "married" and age > 30 and r() < 0.5:
            for _ in range(1 + int(r() * 2)):
                child_year = year - 3 - int(r() * min(age - 21, 25))
                rows.append(
                    (
                        base["crm_child"] + len(batch["crm_child"]) + 1,
                        cid,
                        child_year,
                        "f" if r() < 0.49 else "m",
                    )
                )

        rows = batch["crm_pet"]
        if has_cat:
            for _ in range(1 + (r() < 0.25)):
                rows.append(
                    (base["crm_pet"] + len(batch["crm_pet"]) + 1, cid, "cat", choice(ref.CAT_NAMES))
                )
        if has_dog:
            rows.append(
                (base["crm_pet"] + len(batch["crm_pet"]) + 1, cid, "dog", choice(ref.DOG_NAMES))
            )
        if r() < 0.05:
            kind = choice(("bird", "fish", "rodent", "reptile"))
            rows.append(
                (
                    base["crm_pet"] + len(batch["crm_pet"]) + 1,
                    cid,
                    kind,
                    choice(ref.OTHER_PET_NAMES),
                )
            )

        # Consent history and its current state ----------------------------------------------
        self._consents(batch, cid, start, registered, email != "", pref_channel, tz_shift)

        # Purchases ------------------------------------------------------------------------
        # A basket: (days ago, [(product position, quantity)]).
        baskets: list[tuple[int, list[tuple[int, int]]]] = []
        buyer = r() >= 0.07
        if buyer:
            misc = []
            if beauty:
                misc += ["face-care", "hair-care", "face-care"]
            if diy:
                misc += ["power-tools", "hand-tools", "hand-tools"]
            if vitamins:
                misc.append("vitamins")
            if intimate:
                misc.append("intimate-health")
            if not misc:
                misc = ["hair-care", "power-banks", "vitamins", "face-care"]
            if has_cat:
                dry, wet = leaf["cat-dry-food"], leaf["cat-wet-food"]
                favourite = choice(dry)
                d = start - int(r() * 10)
                while d >= end:
                    lines = [(favourite if r() < 0.8 else choice(dry), 1 + (r() < 0.2))]
                    if r() < 0.55:
                        lines.append((choice(wet), 4 + int(r() * 9)))
                    if r() < 0.35:
                        lines.append((choice(leaf[choice(misc)]), 1))
                    baskets.append((d, lines))
                    d -= 26 + int(r() * 9)  # every 30 ± 4 days
            if has_dog:
                dog = leaf["dog-food"]
                favourite = choice(dog)
                d = start - int(r() * 14)
                while d >= end:
                    lines = [(favourite if r() < 0.85 else choice(dog), 1 + (r() < 0.2))]
                    if r() < 0.4:
                        lines.append((choice(leaf[choice(misc)]), 1))
                    baskets.append((d, lines))
                    d -= 30 + int(r() * 11)
            if baby_day is not None:
                diapers, food = leaf["diapers"], leaf["baby-food"]
                favourite = choice(diapers)
                d = min(start, baby_day)
                stop = max(end, baby_day - 900)
                while d >= stop:
                    lines = [(favourite if r() < 0.75 else choice(diapers), 1 + (r() < 0.3))]
                    if baby_day - d > 150 and r() < 0.5:
                        lines.append((choice(food), 2 + int(r() * 5)))
                    baskets.append((d, lines))
                    d -= 17 + int(r() * 7)  # every 20 ± 3 days
            span = start - end + 1
            if buys_phone:
                d = end + int(r() * span)
                baskets.append((d, [(choice(leaf["smartphones"]), 1)]))
                if r() < 0.55:  # a power bank a few days or weeks later
                    later = d - 2 - int(r() * 28)
                    if later >= 1:
                        baskets.append((later, [(choice(leaf["power-banks"]), 1)]))
            if buys_laptop:
                d = end + int(r() * span)
                lines = [(choice(leaf["laptops"]), 1)]
                bag = r()
                if bag < 0.25:  # bag in the same basket
                    lines.append((choice(leaf["laptop-bags"]), 1))
                baskets.append((d, lines))
                if 0.25 <= bag < 0.6:
                    later = d - int(r() * 15)
                    if later >= 1:
                        baskets.append((later, [(choice(leaf["laptop-bags"]), 1)]))
            if gamer:
                d = end + int(r() * span)
                baskets.append((d, [(choice(leaf["gaming-mice"]), 1)]))
                if r() < 0.5:
                    later = d - 3 - int(r() * 57)
                    if later >= 1:
                        baskets.append((later, [(choice(leaf["gaming-keyboards"]), 1)]))
                if r() < 0.35:
                    later = d - 7 - int(r() * 83)
                    if later >= 1:
                        baskets.append((later, [(choice(leaf["gaming-chairs"]), 1)]))
            for _ in range(int(span / 280 * r() * 2)):
                d = end + int(r() * span)
                lines = [(choice(leaf[choice(misc)]), 1 + (r() < 0.15))]
                for _ in range(1 + int(r() * 3)):
                    lines.append((choice(leaf[choice(misc)]), 1))
                baskets.append((d, lines))

        baskets.sort(key=_first, reverse=True)  # oldest first
        purchases, items, entries = (
            batch["crm_purchase"],
            batch["crm_purchaseitem"],
            batch["loyalty_pointsentry"],
        )
        purchase_base = base["crm_purchase"] + 1
        item_base = base["crm_purchaseitem"] + 1
        entry_base = base["loyalty_pointsentry"] + 1
        stores = self._stores[city.name]
        window: deque[tuple[int, int]] = deque()
        window_sum = 0
        balance = 0
        year_ago = anchor - 365 * DAY
        rolling = 0
        last_day: dict[int, int] = {}  # product position -> the latest (smallest) day it was bought
        for d, lines in baskets:
            when = anchor - d * DAY - tz_shift + 9 * 3600 + int(r() * 13 * 3600)
            when_str = ts(when)
            channel = _pick(r(), (("store", 0.55), ("online", 0.8), ("app", 0.95)), "phone")
            store = (
                choice(stores)
                if channel == "store"
                else {"online": "Интернет-магазин", "app": "Мобильное приложение"}.get(
                    channel, "Колл-центр"
                )
            )
            pid = purchase_base + len(purchases)
            total = 0
            for pos, qty in lines:
                price = p_price[pos]
                line = price * qty
                discount = 0
                if r() < 0.15:
                    discount = line * (5 + 5 * int(r() * 3)) // 10_000 * 100
                total += line - discount
                items.append(
                    (
                        item_base + len(items),
                        pid,
                        p_id[pos],
                        _QTY[qty],
                        p_price_str[pos],
                        _money(discount) if discount else "0.00",
                        cid,
                        when_str,
                    )
                )
                if d < last_day.get(pos, 10**6):
                    last_day[pos] = d
            purchases.append(
                (
                    pid,
                    when_str,
                    when_str,
                    f"DEMO-P{pid:08d}",
                    cid,
                    when_str,
                    channel,
                    store,
                    _money(total),
                )
            )
            if channel in ("online", "app") and r() < 0.6:
                viewed = lines[0][0]
                self._event(
                    batch,
                    cid,
                    "product_view",
                    when - 600 - int(r() * 2 * DAY),
                    p_id[viewed],
                    '{"source": "app"}' if channel == "app" else '{"source": "web"}',
                )
            # Loyalty: tier by spend in the 365 days before this purchase.
            while window and window[0][0] <= when - 365 * DAY:
                window_sum -= window.popleft()[1]
            rate = self.tiers[bisect.bisect_right(self.tier_thresholds, window_sum) - 1][2]
            if balance >= 300 and r() < 0.12:
                spend_points = min(balance, max(100, int(balance * (0.3 + 0.7 * r())) // 10 * 10))
                balance -= spend_points
                entries.append(
                    (
                        entry_base + len(entries),
                        aid,
                        "redeem",
                        -spend_points,
                        pid,
                        None,
                        "Оплата баллами",
                        when_str,
                    )
                )
            points = total * rate // 10_000
            if points > 0:
                balance += points
                entries.append(
                    (
                        entry_base + len(entries),
                        aid,
                        "earn",
                        points,
                        pid,
                        ts(when + self.points_lifetime),
                        "",
                        when_str,
                    )
                )
            window.append((when, total))
            window_sum += total
            if when > year_ago:
                rolling += total

        # Behaviour: abandoned carts and app opens ---------------------------------------------
        if r() < 0.18:
            d = 1 + int(r() * 3) if r() < 0.3 else end + int(r() * (start - end + 1))
            pos = choice(leaf[choice(("smartphones", "power-tools", "face-care", "gaming-chairs"))])
            if last_day.get(pos, 10**6) >= d:  # not bought at that moment or later
                when = anchor - d * DAY - tz_shift + 10 * 3600 + int(r() * 12 * 3600)
                self._event(batch, cid, "product_view", when - 300, p_id[pos], '{"source": "web"}')
                self._event(
                    batch,
                    cid,
                    "cart_add",
                    when,
                    p_id[pos],
                    f'{{"quantity": 1, "price": "{self.p_price_str[pos]}"}}',
                )
        if app_installed:
            platform = '{"platform": "ios"}' if r() < 0.3 else '{"platform": "android"}'
            for _ in range(1 + int(r() * 5)):
                d = end + int(r() * (start - end + 1))
                when = anchor - d * DAY - tz_shift + 8 * 3600 + int(r() * 15 * 3600)
                self._event(batch, cid, "app_open", when, None, platform)

        tier_id = self.tiers[bisect.bisect_right(self.tier_thresholds, rolling) - 1][0]
        batch["loyalty_loyaltyaccount"].append(
            (
                aid,
                registered_str,
                self.anchor_str,
                cid,
                tier_id,
                balance,
                _money(rolling),
                self.anchor_str,
            )
        )

    def _event(
        self, batch: Batch, cid: int, kind: str, when: int, product: int | None, payload: str
    ) -> None:
        when_str = self.ts(when)
        base = self._base
        batch["crm_event"].append(
            (
                base["crm_event"] + len(batch["crm_event"]) + 1,
                cid,
                kind,
                when_str,
                product,
                payload,
                when_str,
            )
        )

    def _consents(
        self,
        batch: Batch,
        cid: int,
        start: int,
        registered: int,
        has_email: bool,
        pref_channel: str,
        tz_shift: int,
    ) -> None:
        r = self.rng.random
        keys: list[tuple[str, str]] = []
        if r() < 0.8:
            keys.append(("sms", "marketing"))
        if r() < 0.45:
            keys.append(("call", "marketing"))
        if has_email and r() < 0.7:
            keys.append(("email", "marketing"))
        if r() < 0.55:
            keys.append((pref_channel or "sms", "profiling"))
        base = self._base
        events, consents = batch["crm_consentevent"], batch["crm_consent"]
        latest = self.anchor - DAY
        for channel, purpose in keys:
            when = registered + int(r() * 600)
            source = _pick(
                r(), (("web_form", 0.35), ("store", 0.7), ("call_center", 0.8), ("ivr", 0.85)), ""
            )
            source = source or "import"
            history = [("granted" if r() < 0.88 else "withdrawn", source, when)]
            if r() < 0.22 and latest > when:
                when = when + int(r() * (latest - when))
                history.append(("withdrawn", _WITHDRAW_SOURCE[channel], when))
                if r() < 0.3 and latest > when:
                    when = when + int(r() * (latest - when))
                    history.append(("granted", choice_of(self.rng, _REGRANT_SOURCES), when))
            last: Row = ()
            for action, src, at in history:
                eid = base["crm_consentevent"] + len(batch["crm_consentevent"]) + 1
                at_str = self.ts(at)
                wording = _wording(at_str)
                last = (
                    eid,
                    cid,
                    channel,
                    purpose,
                    action,
                    src,
                    at_str,
                    None,
                    _ACTOR_LABEL[src],
                    wording,
                    _evidence(src, eid),
                    at_str,
                )
                events.append(last)
            consents.append(
                (
                    base["crm_consent"] + len(batch["crm_consent"]) + 1,
                    cid,
                    channel,
                    purpose,
                    last[4] == "granted",
                    last[6],
                    last[5],
                    last[9],
                    last[0],
                )
            )


_T = TypeVar("_T")
_QTY = [str(n) for n in range(100)]
_WITHDRAW_SOURCE = {"sms": "inbound_sms", "email": "email_unsubscribe", "call": "call_center"}
_REGRANT_SOURCES = ("web_form", "store", "call_center")
_ACTOR_LABEL = {
    "web_form": "сайт",
    "store": "кассир магазина",
    "ivr": "IVR",
    "call_center": "колл-центр",
    "import": "импорт анкет",
    "inbound_sms": "SMS-шлюз",
    "email_unsubscribe": "ссылка отписки",
    "api": "API",
    "admin": "",
}


def _evidence(source: str, event_id: int) -> str:
    if source == "web_form":
        return f"form-submission-{event_id}"
    if source in ("ivr", "call_center"):
        return f"call-record-{event_id}"
    if source == "inbound_sms":
        return "СТОП"
    if source == "store":
        return "подпись в анкете"
    if source == "import":
        return "anketa-2023.csv"
    return ""


def _wording(at: str) -> str:
    version = ref.CONSENT_WORDINGS[0][0]
    for name, since in ref.CONSENT_WORDINGS:
        if at >= since:
            version = name
    return version


def _pick(x: float, thresholds: tuple[tuple[str, float], ...], default: str) -> str:
    for value, upto in thresholds:
        if x < upto:
            return value
    return default


def choice_of(rng: random.Random, options: tuple[str, ...]) -> str:
    return options[int(rng.random() * len(options))]


def _first(basket: tuple[int, list[tuple[int, int]]]) -> int:
    return basket[0]


def _cumulative(weights: Iterable[int]) -> list[int]:
    total, out = 0, []
    for w in weights:
        total += w
        out.append(total)
    return out


def _gcd(a: int, b: int) -> int:
    while b:
        a, b = b, a % b
    return a
