"""A read-only snapshot of the catalog for one engine run: three queries, reused per batch.

Categories with their subtree and sensitivity (a category is sensitive when it or any ancestor
is), products with brand and private-label flag, and each product's popularity (items sold in the
last ``POPULAR_DAYS`` days). Offerable products (in stock and active) are listed per category and
per brand, most popular first.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

from django.db.models import Count
from django.utils import timezone

from crm.models import Category, Product, PurchaseItem

POPULAR_DAYS = 90


@dataclass(frozen=True, slots=True)
class CategoryInfo:
    id: int
    name: str
    path: str
    sensitive: bool  # itself or an ancestor
    ancestors: tuple[int, ...] = ()  # its own id and every ancestor's, root first
    ancestor_set: frozenset[int] = frozenset()


@dataclass(frozen=True, slots=True)
class ProductInfo:
    id: int
    name: str
    sku: str
    category_id: int
    brand_id: int | None
    brand: str
    private_label: bool
    price: Decimal
    cost: Decimal | None
    offerable: bool  # in stock and active
    sensitive: bool
    created_at: dt.datetime
    popularity: int = 0


@dataclass
class Catalog:
    categories: dict[int, CategoryInfo]
    products: dict[int, ProductInfo]
    loaded_at: dt.datetime
    _subtrees: dict[int, frozenset[int]] = field(default_factory=dict)
    by_category: dict[int, list[int]] = field(default_factory=dict)  # offerable, popular first
    by_brand: dict[int, list[int]] = field(default_factory=dict)

    @classmethod
    def load(cls, *, at: dt.datetime | None = None) -> Catalog:
        at = at or timezone.now()
        rows = list(Category.objects.values_list("id", "name", "path", "sensitive"))
        flagged = {cid for cid, _n, _p, sensitive in rows if sensitive}
        categories = {}
        for cid, name, path, _sensitive in rows:
            chain = tuple(int(p) for p in path.strip("/").split("/") if p) or (cid,)
            ancestors = frozenset(chain) | {cid}
            categories[cid] = CategoryInfo(
                cid, name, path, bool(ancestors & flagged), chain, ancestors
            )
        popularity = dict(
            PurchaseItem.objects.filter(purchased_at__gte=at - dt.timedelta(days=POPULAR_DAYS))
            .values_list("product_id")
            .annotate(n=Count("id"))
            .order_by()
            .values_list("product_id", "n")
        )
        products = {}
        for row in Product.objects.values_list(
            "id",
            "name",
            "sku",
            "category_id",
            "brand_id",
            "brand__name",
            "brand__is_private_label",
            "price",
            "cost",
            "in_stock",
            "active",
            "created_at",
        ):
            pid, name, sku, cat, brand_id, brand, pl, price, cost, in_stock, active, created = row
            category = categories.get(cat)
            products[pid] = ProductInfo(
                pid,
                name,
                sku,
                cat,
                brand_id,
                brand or "",
                bool(pl),
                price,
                cost,
                bool(in_stock and active),
                bool(category and category.sensitive),
                created,
                popularity.get(pid, 0),
            )
        catalog = cls(categories, products, at)
        catalog._index()
        return catalog

    def _index(self) -> None:
        by_category: dict[int, list[int]] = defaultdict(list)
        by_brand: dict[int, list[int]] = defaultdict(list)
        ranked = sorted(self.products.values(), key=lambda p: (-p.popularity, p.id))
        for product in ranked:
            if not product.offerable:
                continue
            by_category[product.category_id].append(product.id)
            if product.brand_id is not None:
                by_brand[product.brand_id].append(product.id)
        self.by_category = dict(by_category)
        self.by_brand = dict(by_brand)
        children: dict[int, set[int]] = defaultdict(set)
        for category in self.categories.values():
            for ancestor in category.ancestors:
                children[ancestor].add(category.id)
        self._subtrees = {cid: frozenset(ids) for cid, ids in children.items()}

    def subtree(self, category_id: int) -> frozenset[int]:
        return self._subtrees.get(category_id, frozenset({category_id}))

    def in_subtree(self, product_id: int, category_id: int) -> bool:
        product = self.products.get(product_id)
        return product is not None and product.category_id in self.subtree(category_id)

    def offerable_in(self, category_id: int) -> list[int]:
        """Offerable products of a category and its subcategories, most popular first."""
        ids: list[int] = []
        for cid in self.subtree(category_id):
            ids.extend(self.by_category.get(cid, ()))
        if len(self.subtree(category_id)) > 1:
            ids.sort(key=lambda pid: (-self.products[pid].popularity, pid))
        return ids

    def category_name(self, category_id: int) -> str:
        category = self.categories.get(category_id)
        return category.name if category else ""
