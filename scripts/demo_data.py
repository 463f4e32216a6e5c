"""Demo data for Tarjotin: institutions, courses, offerings and enrolments, generated deterministically. No I/O.

Every item is a plain dict: the JSON body to POST plus one extra entry, `key`, the Idempotency-Key to send with it
(strip it with `body_of`). Server ids are not known in advance, so references use keys instead: an offering's
`course_id` holds the key of its course and an enrolment's `offering_id` the key of its offering; the loader
(`scripts/demo.py`) swaps them for the ids the server returns.

Offering dates are relative to `today`, so enrolment is open whenever the demo is loaded; everything else is
fixed (a seeded `random.Random`), so two builds on the same day are identical.
"""

from __future__ import annotations

import random
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

SEED = 2026
ACADEMIC_YEARS = ("2026-2027", "2027-2028")
GUIDELINE: dict[str, Any] = {
    "price_per_credit": "40.00",
    "external_surcharge_percent": "25",
    "late_withdrawal_percent": "100",
    "free_cancellation_days": 14,
}
OUTSIDE_INSTITUTION = "edupoli"
SMALL_OFFERINGS = 5  # max_participants 3, so a waitlist is easy to show
SMALL_SEATS = 3
WAITLIST_DEMO_STUDENTS = 5  # enrolled in the first small offering: 3 hold seats, 2 are waitlisted
EXPLICIT_PRICES = 10
PRICE_PAIRS = (("120.00", "150.00"), ("150.00", "190.00"), ("90.00", "115.00"), ("60.00", "80.00"))
DELIVERY_MODES = ("online_self_paced", "online_scheduled", "blended")

Item = dict[str, Any]
CENT = Decimal("0.01")


@dataclass(frozen=True)
class Decision:
    """A counsellor of the home institution accepts or rejects the commitment of one enrolment by hand."""

    enrolment: str  # the enrolment's key
    accept: bool
    reason: str | None = None


@dataclass(frozen=True)
class Withdrawal:
    """A confirmed student withdraws: free before the free-cancellation deadline, charged after it (`late`)."""

    enrolment: str
    late: bool


@dataclass(frozen=True)
class Result:
    """The provider records the result of a confirmed enrolment."""

    enrolment: str
    outcome: str  # passed, failed or interrupted
    grade: str | None = None
    credits: str | None = None

    def body(self) -> dict[str, Any]:
        """The body of `POST /api/enrolments/{id}/result`."""
        body: dict[str, Any] = {"outcome": self.outcome}
        if self.grade is not None:
            body["grade"] = self.grade
        if self.credits is not None:
            body["credits"] = self.credits
        return body


@dataclass(frozen=True)
class Story:
    """What the demo does after loading, so that every part of the network's rules shows up in the data.

    In this order: set the `policies` (institution id → body of `PUT /api/billing/policies/{id}`), enrol the
    `enrolments`, make the `decisions` (a rejection in the full small offering promotes `promoted` from its
    waitlist), the `withdrawals`, record the `results`, cancel the offering `cancelled` (which has enrolments), and
    run the invoices of `invoice_run` (a body plus its `key`). References are keys, as elsewhere.
    """

    manual_school: str  # a member in manual mode: its commitments wait for a counsellor
    budget_school: str  # a member in automatic mode whose yearly budget runs out
    policies: dict[str, dict[str, Any]]
    enrolments: list[Item]
    decisions: list[Decision]
    promoted: list[str]
    withdrawals: list[Withdrawal]
    results: list[Result]
    late_offering: str  # started, free-cancellation deadline past, enrolment still open
    cancelled: str
    cancel_reason: str
    invoice_run: Item


@dataclass(frozen=True)
class DemoData:
    """Everything the loader sends; see the module docstring for the shape of the items."""

    guidelines: dict[str, dict[str, Any]]
    institutions: list[Item]
    courses: list[Item]
    offerings: list[Item]
    enrolments: list[Item]
    story: Story | None = None
    _by_key: dict[str, Item] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        story_enrolments = self.story.enrolments if self.story else []
        for item in (*self.courses, *self.offerings, *self.enrolments, *story_enrolments):
            self._by_key[item["key"]] = item

    def item(self, key: str) -> Item:
        """The course, offering or enrolment with this key."""
        return self._by_key[key]

    def course_of(self, offering: Item) -> Item:
        """The course an offering refers to."""
        return self._by_key[offering["course_id"]]

    def offering_of(self, enrolment: Item) -> Item:
        """The offering an enrolment refers to."""
        return self._by_key[enrolment["offering_id"]]

    def provider_of(self, offering: Item) -> str:
        """The id of the institution that provides an offering."""
        return str(self.course_of(offering)["provider_id"])

    def member_price(self, offering: Item) -> Decimal:
        """What a member pays for an offering: its own price, or credits × the guideline's price per credit."""
        if "member_price" in offering:
            return Decimal(offering["member_price"])
        guideline = self.guidelines.get(academic_year_of(date.fromisoformat(offering["start_date"])), GUIDELINE)
        credits = Decimal(self.course_of(offering)["credits"])
        return (credits * Decimal(guideline["price_per_credit"])).quantize(CENT, ROUND_HALF_UP)


def body_of(item: Item) -> dict[str, Any]:
    """The request body of an item: everything but its idempotency key."""
    return {k: v for k, v in item.items() if k != "key"}


def academic_year_of(day: date) -> str:
    """Academic years run 1 Aug – 31 Jul: 2026-09-01 → `2026-2027` (as the catalogue counts them)."""
    first = day.year if day.month >= 8 else day.year - 1
    return f"{first}-{first + 1}"


def ascii_slug(text: str) -> str:
    """Fold to ASCII for header values and e-mail addresses: `ÄI1` → `AI1`, `Mäkinen` → `Makinen`."""
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")


def business_id(seven_digits: str) -> str:
    """A Y-tunnus with a valid check digit for the given (made-up) seven digits."""
    weights = (7, 9, 10, 5, 8, 4, 2)
    remainder = sum(int(d) * w for d, w in zip(seven_digits, weights, strict=True)) % 11
    if remainder == 1:
        raise ValueError(f"{seven_digits} has no valid check digit; pick other digits")
    return f"{seven_digits}-{0 if remainder == 0 else 11 - remainder}"


# --- institutions -------------------------------------------------------------------------------------------------

# id, (fi, sv, en), kind, member, municipality, region, made-up seven digits of a business id, e-mail domain
_INSTITUTIONS: tuple[tuple[str, tuple[str, str, str], str, bool, str, str, str], ...] = (
    (
        "sakky",
        ("Savon ammattiopisto", "Savo yrkesinstitut", "Savo Vocational College"),
        "vocational",
        True,
        "Kuopio",
        "Pohjois-Savo",
        "0171232",
    ),
    (
        "ekami",
        (
            "Etelä-Kymenlaakson ammattiopisto",
            "Södra Kymmenedalens yrkesinstitut",
            "South Kymenlaakso Vocational College",
        ),
        "vocational",
        True,
        "Kotka",
        "Kymenlaakso",
        "0211573",
    ),
    (
        "kao",
        ("Kainuun ammattiopisto", "Kajanalands yrkesinstitut", "Kainuu Vocational College"),
        "vocational",
        True,
        "Kajaani",
        "Kainuu",
        "0241876",
    ),
    (
        "samiedu",
        ("Ammattiopisto Samiedu", "Yrkesinstitutet Samiedu", "Samiedu Vocational College"),
        "vocational",
        True,
        "Savonlinna",
        "Etelä-Savo",
        "0165394",
    ),
    (
        "pkky",
        (
            "Pohjois-Karjalan koulutuskuntayhtymä",
            "Samkommunen för utbildning i Norra Karelen",
            "North Karelia Municipal Education and Training Consortium",
        ),
        "vocational",
        True,
        "Joensuu",
        "Pohjois-Karjala",
        "0208215",
    ),
    (
        "esedu",
        ("Etelä-Savon ammattiopisto", "Södra Savolax yrkesinstitut", "South Savo Vocational College"),
        "vocational",
        True,
        "Mikkeli",
        "Etelä-Savo",
        "0165428",
    ),
    (
        "ysao",
        ("Ylä-Savon ammattiopisto", "Övre Savolax yrkesinstitut", "Upper Savo Vocational College"),
        "vocational",
        True,
        "Iisalmi",
        "Pohjois-Savo",
        "0196357",
    ),
    (
        "edupoli",
        ("Edupoli", "Edupoli", "Edupoli Adult Education Centre"),
        "learning_centre",
        False,
        "Porvoo",
        "Itä-Uusimaa",
        "0134781",
    ),
    (
        "kuopion-lyseo",
        ("Kuopion Lyseon lukio", "Kuopio lyceums gymnasium", "Kuopio Lyseo Upper Secondary School"),
        "upper_secondary",
        True,
        "Kuopio",
        "Pohjois-Savo",
        "0171316",
    ),
)


def _institutions() -> list[Item]:
    items = []
    for slug, (fi, sv, en), kind, member, municipality, region, digits in _INSTITUTIONS:
        y_tunnus = business_id(digits)
        items.append(
            {
                "key": f"demo-inst-{slug}",
                "id": slug,
                "names": {"fi": fi, "sv": sv, "en": en},
                "kind": kind,
                "member": member,
                "municipality": municipality,
                "region": region,
                "business_id": y_tunnus,
                "einvoice_address": "0037" + y_tunnus.replace("-", ""),
            }
        )
    return items


# --- course templates ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Template:
    code: str
    subject: str
    level: str
    credits: str
    fi: str
    sv: str
    en: str
    languages: tuple[str, ...] = ("fi",)


_U, _V, _P = "upper_secondary", "vocational", "preparatory"

# Upper-secondary modules (LOPS 2021 style codes), vocational common units (YTO) and electives, preparatory (TUVA).
_TEMPLATES: tuple[_Template, ...] = (
    _Template("MAY1", "mathematics", _U, "2.0", "Luvut ja lukujonot", "Tal och talföljder", "Numbers and sequences"),
    _Template(
        "MAB2", "mathematics", _U, "2.0", "Lausekkeet ja yhtälöt", "Uttryck och ekvationer", "Expressions and equations"
    ),
    _Template(
        "MAA2",
        "mathematics",
        _U,
        "3.0",
        "Polynomifunktiot ja -yhtälöt",
        "Polynomfunktioner och -ekvationer",
        "Polynomial functions and equations",
    ),
    _Template("MAA6", "mathematics", _U, "3.0", "Derivaatta", "Derivatan", "Derivatives"),
    _Template(
        "MAB5",
        "mathematics",
        _U,
        "2.0",
        "Tilastot ja todennäköisyys",
        "Statistik och sannolikhet",
        "Statistics and probability",
    ),
    _Template(
        "ÄI1",
        "mother_tongue",
        _U,
        "2.0",
        "Tekstien tulkinta ja kirjoittaminen",
        "Texttolkning och skrivande",
        "Interpreting and writing texts",
    ),
    _Template(
        "ÄI4",
        "mother_tongue",
        _U,
        "2.0",
        "Kirjallisuuden keinot ja tulkinta",
        "Litteraturens medel och tolkning",
        "Reading and interpreting literature",
    ),
    _Template(
        "ENA1",
        "english",
        _U,
        "2.0",
        "Englannin kieli ja maailmani",
        "Engelska språket och min värld",
        "English and my world",
        ("en", "fi"),
    ),
    _Template(
        "ENA6",
        "english",
        _U,
        "2.0",
        "Englanti ja työelämä",
        "Engelska och arbetslivet",
        "English for working life",
        ("en",),
    ),
    _Template(
        "RUB11",
        "swedish",
        _U,
        "2.0",
        "Ruotsin kieli ja kulttuuri",
        "Svenska språket och kulturen",
        "Swedish language and culture",
        ("sv", "fi"),
    ),
    _Template(
        "RUB14",
        "swedish",
        _U,
        "2.0",
        "Ruotsi työelämässä",
        "Svenska i arbetslivet",
        "Swedish for working life",
        ("sv", "fi"),
    ),
    _Template(
        "FY1",
        "physics",
        _U,
        "2.0",
        "Fysiikka luonnontieteenä",
        "Fysik som naturvetenskap",
        "Physics as a natural science",
    ),
    _Template("FY3", "physics", _U, "2.0", "Energia ja lämpö", "Energi och värme", "Energy and heat"),
    _Template("KE1", "chemistry", _U, "2.0", "Kemiaa kaikkialla", "Kemi överallt", "Chemistry everywhere"),
    _Template(
        "KE2",
        "chemistry",
        _U,
        "2.0",
        "Ihmisen ja elinympäristön kemia",
        "Människans och livsmiljöns kemi",
        "Chemistry of people and their environment",
    ),
    _Template("BI1", "biology", _U, "2.0", "Elämä ja evoluutio", "Livet och evolutionen", "Life and evolution"),
    _Template("BI2", "biology", _U, "2.0", "Ekologia ja ympäristö", "Ekologi och miljö", "Ecology and the environment"),
    _Template("GE1", "geography", _U, "2.0", "Maailma muutoksessa", "Världen i förändring", "A changing world"),
    _Template(
        "HI1",
        "history",
        _U,
        "2.0",
        "Ihminen, ympäristö ja kulttuuri",
        "Människan, miljön och kulturen",
        "People, environment and culture",
    ),
    _Template(
        "HI3",
        "history",
        _U,
        "2.0",
        "Itsenäisen Suomen historia",
        "Det självständiga Finlands historia",
        "History of independent Finland",
    ),
    _Template(
        "YH1", "social_studies", _U, "2.0", "Suomalainen yhteiskunta", "Det finländska samhället", "Finnish society"
    ),
    _Template("YH2", "social_studies", _U, "2.0", "Taloustieto", "Ekonomi", "Economics"),
    _Template(
        "PS1", "psychology", _U, "2.0", "Psykologia tieteenä", "Psykologi som vetenskap", "Psychology as a science"
    ),
    _Template(
        "PS2",
        "psychology",
        _U,
        "2.0",
        "Kehittyminen elämänkaaren aikana",
        "Utveckling under livets gång",
        "Development across the lifespan",
    ),
    _Template(
        "FI1",
        "philosophy",
        _U,
        "2.0",
        "Johdatus filosofiseen ajatteluun",
        "Introduktion till filosofiskt tänkande",
        "Introduction to philosophical thinking",
    ),
    _Template("FI2", "philosophy", _U, "2.0", "Etiikka", "Etik", "Ethics"),
    _Template(
        "TE1", "health_education", _U, "2.0", "Terveyden perusteet", "Grunderna för hälsa", "Foundations of health"
    ),
    _Template(
        "EAB31", "spanish", _U, "2.0", "Espanja 1: ¡Hola!", "Spanska 1: ¡Hola!", "Spanish 1: ¡Hola!", ("fi", "en")
    ),
    _Template(
        "YTO-VVA",
        "mother_tongue",
        _V,
        "4.0",
        "Viestintä ja vuorovaikutus äidinkielellä",
        "Kommunikation och interaktion på modersmålet",
        "Communication and interaction in the mother tongue",
    ),
    _Template(
        "YTO-VVR",
        "swedish",
        _V,
        "1.0",
        "Viestintä ja vuorovaikutus toisella kotimaisella kielellä (ruotsi)",
        "Kommunikation och interaktion på det andra inhemska språket (svenska)",
        "Communication in the second national language (Swedish)",
        ("sv", "fi"),
    ),
    _Template(
        "YTO-VVE",
        "english",
        _V,
        "3.0",
        "Viestintä ja vuorovaikutus vieraalla kielellä (englanti)",
        "Kommunikation och interaktion på ett främmande språk (engelska)",
        "Communication in a foreign language (English)",
        ("en", "fi"),
    ),
    _Template(
        "YTO-MAT",
        "mathematics",
        _V,
        "4.0",
        "Matematiikka ja matematiikan soveltaminen",
        "Matematik och tillämpning av matematik",
        "Mathematics and its applications",
    ),
    _Template("YTO-FYKE", "physics", _V, "2.0", "Fysiikka ja kemia", "Fysik och kemi", "Physics and chemistry"),
    _Template(
        "YTO-TVT",
        "ict",
        _V,
        "2.0",
        "Tieto- ja viestintätekniikka ja sen hyödyntäminen",
        "Informations- och kommunikationsteknik och dess användning",
        "Using information and communication technology",
    ),
    _Template(
        "YTO-YHT",
        "social_studies",
        _V,
        "2.0",
        "Yhteiskunnassa ja kansalaisena toimiminen",
        "Att verka i samhället och som medborgare",
        "Active citizenship and society",
    ),
    _Template(
        "YTO-TKH",
        "health_education",
        _V,
        "2.0",
        "Työkyvyn ja hyvinvoinnin ylläpitäminen",
        "Upprätthållande av arbetsförmåga och välbefinnande",
        "Maintaining work ability and wellbeing",
    ),
    _Template(
        "YTO-YRI",
        "entrepreneurship",
        _V,
        "1.0",
        "Yrittäjyys ja yrittäjämäinen toiminta",
        "Företagande och entreprenöriellt agerande",
        "Entrepreneurship and enterprising activity",
    ),
    _Template(
        "YTO-KEK",
        "sustainability",
        _V,
        "1.0",
        "Kestävän kehityksen edistäminen",
        "Främjande av hållbar utveckling",
        "Promoting sustainable development",
    ),
    _Template(
        "YTO-TEL",
        "working_life",
        _V,
        "1.0",
        "Työelämässä toimiminen",
        "Att verka i arbetslivet",
        "Working life skills",
    ),
    _Template(
        "OHJ1",
        "programming",
        _V,
        "5.0",
        "Ohjelmoinnin perusteet (Python)",
        "Grunderna i programmering (Python)",
        "Introduction to programming (Python)",
        ("fi", "en"),
    ),
    _Template(
        "OHJ2", "programming", _V, "5.0", "Web-ohjelmointi", "Webbprogrammering", "Web programming", ("fi", "en")
    ),
    _Template("OHJ3", "programming", _V, "3.0", "Tietokannat ja SQL", "Databaser och SQL", "Databases and SQL"),
    _Template(
        "YRI2", "entrepreneurship", _V, "3.0", "Liiketoimintasuunnitelma", "Affärsplan", "Writing a business plan"
    ),
    _Template("KIR1", "accounting", _V, "3.0", "Kirjanpidon perusteet", "Grunderna i bokföring", "Bookkeeping basics"),
    _Template(
        "DIGI1",
        "marketing",
        _V,
        "2.0",
        "Digitaalinen markkinointi ja some",
        "Digital marknadsföring och sociala medier",
        "Digital and social media marketing",
    ),
    _Template(
        "ASPA1",
        "customer_service",
        _V,
        "2.0",
        "Asiakaspalvelu ja vuorovaikutus",
        "Kundservice och interaktion",
        "Customer service and interaction",
    ),
    _Template("EA1", "first_aid", _V, "1.0", "Ensiapu 1", "Första hjälpen 1", "First aid 1"),
    _Template(
        "HYG1",
        "hygiene",
        _V,
        "1.0",
        "Hygieniaosaaminen (hygieniapassi)",
        "Hygienkompetens (hygienpass)",
        "Food hygiene proficiency",
        ("fi", "sv", "en"),
    ),
    _Template(
        "TTK1",
        "occupational_safety",
        _V,
        "1.0",
        "Työturvallisuuskortti",
        "Arbetarskyddskort",
        "Occupational safety card",
    ),
    _Template(
        "KVO1",
        "intercultural_competence",
        _V,
        "2.0",
        "Kansainvälisyysosaaminen",
        "Internationell kompetens",
        "Intercultural competence",
        ("en",),
    ),
    _Template(
        "TUVA-OUS",
        "study_skills",
        _P,
        "2.0",
        "Opiskelu- ja urasuunnittelutaidot",
        "Studie- och karriärplaneringsfärdigheter",
        "Study and career planning skills",
    ),
    _Template(
        "TUVA-MAT",
        "mathematics",
        _P,
        "3.0",
        "Perustaitojen vahvistaminen: matematiikka",
        "Stärkande av grundläggande färdigheter: matematik",
        "Strengthening basic skills: mathematics",
    ),
    _Template(
        "TUVA-S2",
        "finnish_as_second_language",
        _P,
        "3.0",
        "Suomi toisena kielenä: arjen viestintä",
        "Finska som andra språk: vardagskommunikation",
        "Finnish as a second language: everyday communication",
        ("fi", "en"),
    ),
    _Template(
        "TUVA-DIG",
        "ict",
        _P,
        "2.0",
        "Digitaidot opiskelussa",
        "Digitala färdigheter i studierna",
        "Digital skills for studying",
    ),
)

_MODE_TEXT = {
    "online_self_paced": ("itsenäisesti omaan tahtiin verkossa", "i egen takt på nätet", "online at your own pace"),
    "online_scheduled": (
        "verkossa aikataulutetuin etätunnein",
        "på nätet med schemalagda lektioner",
        "online with scheduled live sessions",
    ),
    "blended": (
        "monimuotoisesti: verkossa ja lähipäivinä",
        "som flerformsundervisning: på nätet och närdagar",
        "blended: online plus a few contact days",
    ),
}
_UNIT = {_U: ("op", "sp", "credits"), _V: ("osp", "kp", "competence points"), _P: ("vk", "v", "weeks")}

_TEACHERS = (
    ("Anna", "Heikkinen"),
    ("Mikko", "Korhonen"),
    ("Sari", "Laitinen"),
    ("Jukka", "Miettinen"),
    ("Tiina", "Räsänen"),
    ("Petri", "Hyvönen"),
    ("Katja", "Kinnunen"),
    ("Ville", "Turunen"),
    ("Hanna", "Pesonen"),
    ("Janne", "Lehtonen"),
)


def _course(rng: random.Random, provider: str, template: _Template) -> Item:
    mode = rng.choices(DELIVERY_MODES, weights=(45, 35, 20))[0]
    coverage = rng.choices(("all", "fi+en", "fi"), weights=(78, 14, 8))[0]
    languages = list(template.languages)
    if languages == ["fi"] and rng.random() < 0.12:
        languages.append("en")
    if coverage == "all" or "sv" in languages:
        titles = {"fi": template.fi, "sv": template.sv, "en": template.en}
    elif coverage == "fi+en" or "en" in languages:
        titles = {"fi": template.fi, "en": template.en}
    else:
        titles = {"fi": template.fi}
    return _course_item(provider, template, mode, titles, languages, rng.choice(_TEACHERS))


def _course_item(
    provider: str,
    template: _Template,
    mode: str,
    titles: dict[str, str],
    languages: list[str],
    teacher: tuple[str, str],
) -> Item:
    unit = _UNIT[template.level]
    mode_fi, mode_sv, mode_en = _MODE_TEXT[mode]
    descriptions = {
        "fi": f"{template.fi}. Kurssi suoritetaan {mode_fi}. Laajuus {template.credits.replace('.', ',')} {unit[0]}.",
        "sv": f"{template.sv}. Kursen genomförs {mode_sv}. Omfattning {template.credits.replace('.', ',')} {unit[1]}.",
        "en": f"{template.en}. The course runs {mode_en}. Scope {template.credits} {unit[2]}.",
    }
    first, last = teacher
    return {
        "key": f"demo-course-{provider}-{ascii_slug(template.code)}",
        "provider_id": provider,
        "code": template.code,
        "titles": titles,
        "descriptions": {lang: text for lang, text in descriptions.items() if lang in titles},
        "subject": template.subject,
        "level": template.level,
        "credits": template.credits,
        "languages": languages,
        "delivery_mode": mode,
        "teacher_contact": f"{ascii_slug(first).lower()}.{ascii_slug(last).lower()}@{provider}.example.fi",
    }


# Which providers offer what: vocational colleges mostly vocational and preparatory units plus some upper-secondary
# modules (for double-degree students); the upper-secondary school only upper-secondary modules.
_COURSES_PER_PROVIDER = {
    "sakky": 13,
    "ekami": 12,
    "kao": 12,
    "samiedu": 11,
    "pkky": 13,
    "esedu": 12,
    "ysao": 11,
    "kuopion-lyseo": 14,
}


def _courses(rng: random.Random) -> list[Item]:
    upper = [t for t in _TEMPLATES if t.level == _U]
    other = [t for t in _TEMPLATES if t.level != _U]
    courses: list[Item] = []
    for provider, count in _COURSES_PER_PROVIDER.items():
        if provider == "kuopion-lyseo":
            chosen = rng.sample(upper, count)
        else:
            n_upper = count // 3
            chosen = rng.sample(upper, n_upper) + rng.sample(other, count - n_upper)
        courses.extend(_course(rng, provider, t) for t in sorted(chosen, key=lambda t: t.code))
    return courses


# --- offerings ----------------------------------------------------------------------------------------------------

# Start-date windows (days from today) for a course's first, second and third offering.
_START_WINDOWS = ((14, 55), (56, 105), (106, 150))


def _next_monday(day: date) -> date:
    return day + timedelta(days=(7 - day.weekday()) % 7)


def _offerings(rng: random.Random, courses: list[Item], today: date) -> list[Item]:
    offerings: list[Item] = []
    for course in courses:
        count = rng.choices((2, 3), weights=(45, 55))[0]
        for n, (low, high) in enumerate(_START_WINDOWS[:count], start=1):
            start = _next_monday(today + timedelta(days=rng.randint(low, high)))
            weeks = int(float(course["credits"]) * 2) + rng.randint(3, 6)
            if course["delivery_mode"] == "online_self_paced":
                weeks += 4
            closes = today + timedelta(days=120) if rng.random() < 0.88 else start + timedelta(days=7)
            max_participants = rng.choice((15, 20, 24, 25, 30, 35, 40))
            offerings.append(
                {
                    "key": f"demo-offering-{course['provider_id']}-{ascii_slug(course['code'])}-{n}",
                    "course_id": course["key"],
                    "start_date": start.isoformat(),
                    "end_date": (start + timedelta(weeks=weeks, days=-3)).isoformat(),
                    "enrolment_opens": (today - timedelta(days=30)).isoformat(),
                    "enrolment_closes": closes.isoformat(),
                    "min_participants": rng.choice((1, 3, 4, 5, 6, 8)),
                    "max_participants": max_participants,
                }
            )
    # A few small offerings (for a waitlist) and a few with their own prices; never both on the same one.
    picked = rng.sample(range(len(offerings)), SMALL_OFFERINGS + EXPLICIT_PRICES)
    for index in sorted(picked[:SMALL_OFFERINGS]):
        offerings[index].update(min_participants=1, max_participants=SMALL_SEATS)
    for index in picked[SMALL_OFFERINGS:]:
        member, external = rng.choice(PRICE_PAIRS)
        offerings[index].update(member_price=member, external_price=external)
    return offerings


# --- enrolments ---------------------------------------------------------------------------------------------------

_STUDENTS = (
    ("Aino", "Virtanen"),
    ("Eetu", "Mäkinen"),
    ("Emma", "Nieminen"),
    ("Onni", "Hämäläinen"),
    ("Sofia", "Koskinen"),
    ("Leevi", "Järvinen"),
    ("Helmi", "Lehtinen"),
    ("Elias", "Saarinen"),
    ("Venla", "Salminen"),
    ("Väinö", "Heinonen"),
    ("Isla", "Niemi"),
    ("Eino", "Heikkilä"),
    ("Aada", "Kettunen"),
    ("Oliver", "Ahonen"),
    ("Lilja", "Tuominen"),
    ("Niilo", "Rantanen"),
    ("Linnea", "Karjalainen"),
    ("Toivo", "Jokinen"),
    ("Ellen", "Lindqvist"),
    ("Vilho", "Savolainen"),
    ("Kerttu", "Huttunen"),
)
# Home institutions of the regular demo enrolments, in order; the outside institution is among them.
_HOMES = (
    "kao",
    "edupoli",
    "sakky",
    "pkky",
    "esedu",
    "ysao",
    "ekami",
    "samiedu",
    "kuopion-lyseo",
    "edupoli",
    "kao",
    "sakky",
    "pkky",
    "esedu",
    "ysao",
    "ekami",
)
_WAITLIST_HOMES = ("kao", "pkky", "edupoli", "ysao", "ekami")


def _student(home: str, number: int, person: tuple[str, str]) -> dict[str, str]:
    first, last = person
    email = f"{ascii_slug(first).lower()}.{ascii_slug(last).lower()}@example.fi"
    return {"learner_id": f"{home}-{number}", "name": f"{first} {last}", "email": email}


def _enrolment(home: str, offering: Item, student: dict[str, str]) -> Item:
    offering_ref = offering["key"].removeprefix("demo-offering-")
    return {
        "key": f"demo-enrol-{student['learner_id']}-{offering_ref}",
        "offering_id": offering["key"],
        "home_institution_id": home,
        "student": student,
    }


def _enrolments(rng: random.Random, data: DemoData) -> list[Item]:
    small = [o for o in data.offerings if o["max_participants"] == SMALL_SEATS]
    regular = [o for o in data.offerings if o["max_participants"] > SMALL_SEATS]
    # Ten offerings get the regular enrolments, some of them two or three students.
    targets = rng.sample(regular, 10)
    people = iter(_STUDENTS)
    enrolments = []
    for i, home in enumerate(_HOMES):
        candidates = [o for o in targets[i % len(targets) :] + targets if data.provider_of(o) != home]
        enrolments.append(_enrolment(home, candidates[0], _student(home, 1001 + i, next(people))))
    waitlisted = next(o for o in small if data.provider_of(o) not in _WAITLIST_HOMES)
    for j, home in enumerate(_WAITLIST_HOMES):
        person = _STUDENTS[(len(_HOMES) + j) % len(_STUDENTS)]
        enrolments.append(_enrolment(home, waitlisted, _student(home, 2001 + j, person)))
    return enrolments


# --- the story: policies, decisions, withdrawals, results, a cancellation and an invoice run ----------------------

MANUAL_SCHOOL = "samiedu"  # a member that approves every commitment by hand
BUDGET_SCHOOL = "kuopion-lyseo"  # a member in automatic mode with a small yearly budget
CANCEL_REASON = "Too few participants for a viable group; the course runs again next term."

# Two courses of their own, so that each has exactly one offering (the loader finds an offering made on an earlier
# day by its course): one that started three weeks ago and one the provider cancels.
_LATE_COURSE = (
    "kuopion-lyseo",
    _Template("BI3", "biology", _U, "2.0", "Solu ja perinnöllisyys", "Cellen och ärftligheten", "Cells and heredity"),
    "online_self_paced",
    ("Anna", "Heikkinen"),
)
_CANCELLED_COURSE = (
    "ysao",
    _Template("YRI3", "entrepreneurship", _V, "2.0", "Verkkokauppa", "E-handel", "Running an online shop"),
    "online_scheduled",
    ("Ville", "Turunen"),
)

_MORE_STUDENTS = (
    ("Iida", "Mustonen"),
    ("Aleksi", "Pitkänen"),
    ("Siiri", "Hirvonen"),
    ("Kasper", "Laaksonen"),
    ("Minea", "Väisänen"),
    ("Joel", "Kärkkäinen"),
    ("Pihla", "Ikonen"),
    ("Topias", "Leinonen"),
    ("Ella", "Lindholm"),
    ("Rasmus", "Nyström"),
    ("Nelli", "Partanen"),
    ("Emil", "Kauppinen"),
    ("Lumi", "Seppälä"),
    ("Hugo", "Björklund"),
    ("Enni", "Manninen"),
    ("Otto", "Vartiainen"),
    ("Selma", "Koivisto"),
    ("Aaro", "Kokkonen"),
)

# Students in the late offering (started, deadline past) and what happens to each: a result (outcome, grade,
# credits earned), a withdrawal after the deadline (charged the late-withdrawal share), or nothing (still enrolled
# after the deadline: the whole price is owed).
_LATE_ENROLMENTS: tuple[tuple[str, str, str | None, str | None], ...] = (
    ("kao", "passed", "9", "2.0"),
    ("pkky", "failed", "4", None),
    ("esedu", "interrupted", None, None),
    ("ysao", "withdraws", None, None),
    ("ekami", "stays", None, None),
)
OUTCOMES = ("passed", "failed", "interrupted")
_CANCELLED_HOMES = ("ekami", "sakky", OUTSIDE_INSTITUTION)


def _story_course(spec: tuple[str, _Template, str, tuple[str, str]]) -> Item:
    provider, template, mode, teacher = spec
    titles = {"fi": template.fi, "sv": template.sv, "en": template.en}
    return _course_item(provider, template, mode, titles, list(template.languages), teacher)


def _late_offering(course: Item, today: date) -> Item:
    """Started 20 days ago, free cancellation ended 6 days ago, enrolment open for 10 more days."""
    start = today - timedelta(days=20)
    return {
        "key": f"demo-offering-{course['provider_id']}-{course['code']}-1",
        "course_id": course["key"],
        "start_date": start.isoformat(),
        "end_date": (start + timedelta(weeks=8)).isoformat(),
        "enrolment_opens": (today - timedelta(days=40)).isoformat(),
        "enrolment_closes": (today + timedelta(days=10)).isoformat(),
        "free_cancellation_deadline": (today - timedelta(days=6)).isoformat(),
        "min_participants": 3,
        "max_participants": 25,
    }


def _cancelled_offering(course: Item, today: date) -> Item:
    """An ordinary future offering with a high minimum; the provider cancels it for lack of participants."""
    start = _next_monday(today + timedelta(days=35))
    return {
        "key": f"demo-offering-{course['provider_id']}-{course['code']}-1",
        "course_id": course["key"],
        "start_date": start.isoformat(),
        "end_date": (start + timedelta(weeks=7, days=-3)).isoformat(),
        "enrolment_opens": (today - timedelta(days=30)).isoformat(),
        "enrolment_closes": (start - timedelta(days=7)).isoformat(),
        "min_participants": 8,
        "max_participants": 20,
    }


class _Picker:
    """Picks ordinary offerings for the story's students, deterministically, never one of the home's own."""

    def __init__(self, data: DemoData, own: set[str]) -> None:
        self.data = data
        self.rng = random.Random(SEED + 1)  # a stream of its own: the data loaded before the story stays as it was
        self.pool = [o for o in data.offerings if o["max_participants"] > SMALL_SEATS and o["key"] not in own]

    def pick(self, home: str, count: int, fits: Callable[[Item], bool] | None = None) -> list[Item]:
        """`count` different offerings a student of `home` may take (and that `fits`, if given)."""
        candidates = [o for o in self.pool if self.data.provider_of(o) != home and (fits is None or fits(o))]
        return self.rng.sample(candidates, count)


class _Students:
    """Numbers and names for the story's students: `samiedu-3001`, ..."""

    def __init__(self) -> None:
        self.number = 3000
        self.people = iter(_MORE_STUDENTS * 2)

    def enrol(self, home: str, offering: Item) -> Item:
        self.number += 1
        return _enrolment(home, offering, _student(home, self.number, next(self.people)))


def _budget_enrolments(data: DemoData, picker: _Picker, students: _Students) -> tuple[list[Item], str]:
    """Three more students of the budget school in the course one of its students already takes, and a yearly
    budget that covers what the school already uses plus one of them: the other two wait for approval.

    The same offering every day (the picks never depend on the date), so its academic year is that of the
    school's earlier enrolment whatever day the demo runs.
    """
    earlier = [e for e in data.enrolments if e["home_institution_id"] == BUDGET_SCHOOL]
    seats_left = [data.offering_of(e) for e in earlier if data.offering_of(e)["max_participants"] > SMALL_SEATS + 3]
    target = seats_left[0] if seats_left else picker.pick(BUDGET_SCHOOL, 1)[0]
    year = academic_year_of(date.fromisoformat(target["start_date"]))
    used = sum(
        (
            data.member_price(data.offering_of(e))
            for e in earlier
            if academic_year_of(date.fromisoformat(data.offering_of(e)["start_date"])) == year
        ),
        Decimal("0.00"),
    )
    return [students.enrol(BUDGET_SCHOOL, target) for _ in range(3)], str(used + data.member_price(target))


def _story(data: DemoData, late: Item, cancelled: Item, today: date) -> Story:
    picker, students = _Picker(data, own={late["key"], cancelled["key"]}), _Students()
    manual = [students.enrol(MANUAL_SCHOOL, o) for o in picker.pick(MANUAL_SCHOOL, 3)]
    budget, yearly_budget = _budget_enrolments(data, picker, students)
    with_own_prices = picker.pick(OUTSIDE_INSTITUTION, 1, lambda o: "external_price" in o)
    outside = [students.enrol(OUTSIDE_INSTITUTION, o) for o in with_own_prices]
    early = [students.enrol("sakky", o) for o in picker.pick("sakky", 1)]
    in_late = [students.enrol(home, late) for home, *_ in _LATE_ENROLMENTS]
    in_cancelled = [students.enrol(home, cancelled) for home in _CANCELLED_HOMES]

    # In the full small offering the outside institution's student holds the last seat; rejecting that
    # commitment promotes the first waitlisted student.
    small = data.offering_of(data.enrolments[len(_HOMES)])  # `_enrolments` puts the waitlist demo after the rest
    in_small = [e for e in data.enrolments if e["offering_id"] == small["key"]]
    outside_main = [e for e in data.enrolments if e["home_institution_id"] == OUTSIDE_INSTITUTION]
    rejected = next(e for e in in_small[:SMALL_SEATS] if e["home_institution_id"] == OUTSIDE_INSTITUTION)
    decisions = [
        *(Decision(e["key"], accept=True) for e in outside_main if e is not rejected),
        Decision(rejected["key"], accept=False, reason="No funding for this course this term."),
        Decision(manual[0]["key"], accept=True),
    ]
    roles = list(zip(in_late, _LATE_ENROLMENTS, strict=True))
    results = [Result(e["key"], what, grade, credits) for e, (_, what, grade, credits) in roles if what in OUTCOMES]
    late_withdrawals = [Withdrawal(e["key"], late=True) for e, (_, what, *_) in roles if what == "withdraws"]
    month = today.replace(day=1)
    return Story(
        manual_school=MANUAL_SCHOOL,
        budget_school=BUDGET_SCHOOL,
        policies={
            MANUAL_SCHOOL: {"mode": "manual"},
            BUDGET_SCHOOL: {"mode": "automatic", "yearly_budget": yearly_budget},
        },
        enrolments=[*manual, *budget, *outside, *early, *in_late, *in_cancelled],
        decisions=decisions,
        promoted=[in_small[SMALL_SEATS]["key"]],
        withdrawals=[Withdrawal(early[0]["key"], late=False), *late_withdrawals],
        results=results,
        late_offering=late["key"],
        cancelled=cancelled["key"],
        cancel_reason=CANCEL_REASON,
        invoice_run={
            "key": f"demo-invoice-run-{month:%Y-%m}",  # one run a month: a later day's rerun is refused (409)
            "period_start": month.isoformat(),
            "period_end": today.isoformat(),
        },
    )


def build(today: date | None = None) -> DemoData:
    """The demo data set; offering dates are relative to `today` (default: the current date)."""
    today = today or date.today()
    rng = random.Random(SEED)
    courses = _courses(rng)
    offerings = _offerings(rng, courses, today)
    loaded = DemoData(
        guidelines={year: dict(GUIDELINE) for year in ACADEMIC_YEARS},
        institutions=_institutions(),
        courses=courses,
        offerings=offerings,
        enrolments=[],
    )
    enrolments = _enrolments(rng, loaded)
    late_course, cancelled_course = _story_course(_LATE_COURSE), _story_course(_CANCELLED_COURSE)
    late, cancelled = _late_offering(late_course, today), _cancelled_offering(cancelled_course, today)
    all_offerings = [*offerings, late, cancelled]
    years = {*ACADEMIC_YEARS, *(academic_year_of(date.fromisoformat(o["start_date"])) for o in all_offerings)}
    before_story = DemoData(
        guidelines={year: dict(GUIDELINE) for year in sorted(years)},
        institutions=loaded.institutions,
        courses=[*courses, late_course, cancelled_course],
        offerings=all_offerings,
        enrolments=enrolments,
    )
    return DemoData(
        guidelines=before_story.guidelines,
        institutions=before_story.institutions,
        courses=before_story.courses,
        offerings=before_story.offerings,
        enrolments=before_story.enrolments,
        story=_story(before_story, late, cancelled, today),
    )
