"""City -> IANA time zone for the cities our clients live in.

Used to fill a client's time zone when only the city is known; quiet hours are computed in it.
"""

from __future__ import annotations

CITY_TIME_ZONES: dict[str, str] = {
    "москва": "Europe/Moscow",
    "санкт-петербург": "Europe/Moscow",
    "казань": "Europe/Moscow",
    "нижний новгород": "Europe/Moscow",
    "ростов-на-дону": "Europe/Moscow",
    "воронеж": "Europe/Moscow",
    "краснодар": "Europe/Moscow",
    "сочи": "Europe/Moscow",
    "ярославль": "Europe/Moscow",
    "тула": "Europe/Moscow",
    "калининград": "Europe/Kaliningrad",
    "волгоград": "Europe/Volgograd",
    "самара": "Europe/Samara",
    "ижевск": "Europe/Samara",
    "саратов": "Europe/Saratov",
    "ульяновск": "Europe/Ulyanovsk",
    "астрахань": "Europe/Astrakhan",
    "екатеринбург": "Asia/Yekaterinburg",
    "пермь": "Asia/Yekaterinburg",
    "челябинск": "Asia/Yekaterinburg",
    "уфа": "Asia/Yekaterinburg",
    "тюмень": "Asia/Yekaterinburg",
    "омск": "Asia/Omsk",
    "новосибирск": "Asia/Novosibirsk",
    "барнаул": "Asia/Barnaul",
    "томск": "Asia/Tomsk",
    "кемерово": "Asia/Novokuznetsk",
    "новокузнецк": "Asia/Novokuznetsk",
    "красноярск": "Asia/Krasnoyarsk",
    "иркутск": "Asia/Irkutsk",
    "улан-удэ": "Asia/Irkutsk",
    "чита": "Asia/Chita",
    "якутск": "Asia/Yakutsk",
    "хабаровск": "Asia/Vladivostok",
    "владивосток": "Asia/Vladivostok",
    "магадан": "Asia/Magadan",
    "южно-сахалинск": "Asia/Sakhalin",
    "петропавловск-камчатский": "Asia/Kamchatka",
    "moscow": "Europe/Moscow",
    "saint petersburg": "Europe/Moscow",
    "kazan": "Europe/Moscow",
    "yekaterinburg": "Asia/Yekaterinburg",
    "novosibirsk": "Asia/Novosibirsk",
    "krasnoyarsk": "Asia/Krasnoyarsk",
    "vladivostok": "Asia/Vladivostok",
    "samara": "Europe/Samara",
    "omsk": "Asia/Omsk",
    "perm": "Asia/Yekaterinburg",
}


def time_zone_for_city(city: str) -> str | None:
    key = " ".join((city or "").lower().replace("ё", "е").replace("г.", " ").split())
    return CITY_TIME_ZONES.get(key)
