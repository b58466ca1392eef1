"""The recall study's facts: subject-relation-object triples from public knowledge, as prompts.

    RELATIONS        relation -> (template with ``{}`` for the subject, [(subject, object), ...])
    Fact             one prompt: relation, subject, object, the prompt text, the subject's
                     character span in it
    facts()          every fact, in a fixed order (relation by relation, as written)

A prompt is its relation's template with the subject put in (``"The Eiffel Tower is located in
the city of"``); the model's answer is the first token of ``" " + object`` after the prompt
(``" Paris"``), as in ROME's known facts (Meng et al. 2022). The subject's span is kept in
characters here and turned into the model's token span by the study (`claims.recall.prompts`).
"""

from __future__ import annotations

from dataclasses import dataclass


def _pairs(text: str) -> list[tuple[str, str]]:
    rows = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return [tuple(part.strip() for part in row.split("|")) for row in rows]  # type: ignore[misc]


RELATIONS: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "capital": ("The capital of {} is", _pairs("""
        France|Paris
        Germany|Berlin
        Italy|Rome
        Spain|Madrid
        Portugal|Lisbon
        Japan|Tokyo
        China|Beijing
        Russia|Moscow
        Egypt|Cairo
        Greece|Athens
        Canada|Ottawa
        Australia|Canberra
        Argentina|Buenos Aires
        India|New Delhi
        Ireland|Dublin
        Norway|Oslo
        Sweden|Stockholm
        Finland|Helsinki
        Denmark|Copenhagen
        Poland|Warsaw
        Austria|Vienna
        Hungary|Budapest
        Turkey|Ankara
        Iran|Tehran
        Iraq|Baghdad
        Kenya|Nairobi
        Peru|Lima
        Chile|Santiago
        Cuba|Havana
        Thailand|Bangkok
        Vietnam|Hanoi
        South Korea|Seoul
        North Korea|Pyongyang
        Indonesia|Jakarta
        the Philippines|Manila
        Belgium|Brussels
        the Netherlands|Amsterdam
        the Czech Republic|Prague
        Romania|Bucharest
        Saudi Arabia|Riyadh
        Pakistan|Islamabad
        Afghanistan|Kabul
        Nigeria|Abuja
        Ethiopia|Addis Ababa
        Morocco|Rabat
        Venezuela|Caracas
        Iceland|Reykjavik
        Scotland|Edinburgh
        England|London
        Bulgaria|Sofia
        Serbia|Belgrade
        Croatia|Zagreb
        Syria|Damascus
        Lebanon|Beirut
        Jordan|Amman
        Nepal|Kathmandu
        Bangladesh|Dhaka
        Malaysia|Kuala Lumpur
        New Zealand|Wellington
        Ghana|Accra
        Uganda|Kampala
        Zimbabwe|Harare
        Qatar|Doha
        Estonia|Tallinn
        Latvia|Riga
        Lithuania|Vilnius
        Slovakia|Bratislava
        Wales|Cardiff
        Ecuador|Quito
        Uruguay|Montevideo
        Jamaica|Kingston
        Cambodia|Phnom Penh
        Taiwan|Taipei
        Libya|Tripoli
        Tunisia|Tunis
        Algeria|Algiers
        Sudan|Khartoum
        Senegal|Dakar
        Belarus|Minsk
        Georgia|Tbilisi
        Armenia|Yerevan
        Azerbaijan|Baku
        Uzbekistan|Tashkent
    """)),
    "landmark_city": ("{} is located in the city of", _pairs("""
        The Eiffel Tower|Paris
        The Louvre|Paris
        The Arc de Triomphe|Paris
        Notre-Dame Cathedral|Paris
        The Colosseum|Rome
        The Trevi Fountain|Rome
        The Pantheon|Rome
        Big Ben|London
        Tower Bridge|London
        Buckingham Palace|London
        Westminster Abbey|London
        The Statue of Liberty|New York
        The Empire State Building|New York
        Central Park|New York
        Times Square|New York
        The Brooklyn Bridge|New York
        The Golden Gate Bridge|San Francisco
        The Space Needle|Seattle
        The Brandenburg Gate|Berlin
        The Sagrada Familia|Barcelona
        The Acropolis|Athens
        The Kremlin|Moscow
        Red Square|Moscow
        The Forbidden City|Beijing
        The Burj Khalifa|Dubai
        Christ the Redeemer|Rio de Janeiro
        The Taj Mahal|Agra
        The Petronas Towers|Kuala Lumpur
        The Hagia Sophia|Istanbul
        The Blue Mosque|Istanbul
        The Alhambra|Granada
        The Prado Museum|Madrid
        The Rijksmuseum|Amsterdam
        The Anne Frank House|Amsterdam
        The Hollywood Sign|Los Angeles
        The Willis Tower|Chicago
        The Gateway Arch|St. Louis
        The White House|Washington
        The Lincoln Memorial|Washington
        The CN Tower|Toronto
        Shibuya Crossing|Tokyo
        The Charles Bridge|Prague
        The Atomium|Brussels
        The Uffizi Gallery|Florence
        The Rialto Bridge|Venice
        The Hermitage Museum|Saint Petersburg
        Marina Bay Sands|Singapore
        The Oriental Pearl Tower|Shanghai
        The Sydney Opera House|Sydney
        The Little Mermaid statue|Copenhagen
    """)),
    "company_country": ("{} is headquartered in the country of", _pairs("""
        Toyota|Japan
        Sony|Japan
        Honda|Japan
        Nintendo|Japan
        Panasonic|Japan
        Samsung|South Korea
        Hyundai|South Korea
        Volkswagen|Germany
        BMW|Germany
        Siemens|Germany
        Adidas|Germany
        Bosch|Germany
        Nokia|Finland
        IKEA|Sweden
        Volvo|Sweden
        Ericsson|Sweden
        Nestlé|Switzerland
        Rolex|Switzerland
        Ferrari|Italy
        Fiat|Italy
        Renault|France
        Peugeot|France
        Michelin|France
        Philips|the Netherlands
        Heineken|the Netherlands
        Lego|Denmark
        Carlsberg|Denmark
        Tata Motors|India
        Infosys|India
        Alibaba|China
        Huawei|China
        Tencent|China
        Lenovo|China
        Microsoft|the United States
        Boeing|the United States
        Coca-Cola|the United States
        BlackBerry|Canada
        Bombardier|Canada
        Embraer|Brazil
        Petrobras|Brazil
        Gazprom|Russia
        Qantas|Australia
        Skoda|the Czech Republic
    """)),
    "company_founder": ("{} was founded by", _pairs("""
        Microsoft|Bill Gates
        Apple|Steve Jobs
        Amazon|Jeff Bezos
        Facebook|Mark Zuckerberg
        SpaceX|Elon Musk
        The Ford Motor Company|Henry Ford
        Oracle|Larry Ellison
        Dell|Michael Dell
        The Walt Disney Company|Walt Disney
        The Virgin Group|Richard Branson
        Alibaba|Jack Ma
        Nike|Phil Knight
        Netflix|Reed Hastings
        Twitter|Jack Dorsey
        Wikipedia|Jimmy Wales
        Honda|Soichiro Honda
        Hewlett-Packard|Bill Hewlett
        Berkshire Hathaway|Oliver Chace
        Ferrari|Enzo Ferrari
        Porsche|Ferdinand Porsche
    """)),
    "element_symbol": ("The chemical symbol of {} is", _pairs("""
        hydrogen|H
        helium|He
        lithium|Li
        carbon|C
        nitrogen|N
        oxygen|O
        fluorine|F
        neon|Ne
        sodium|Na
        magnesium|Mg
        aluminium|Al
        silicon|Si
        phosphorus|P
        sulfur|S
        chlorine|Cl
        argon|Ar
        potassium|K
        calcium|Ca
        iron|Fe
        copper|Cu
        zinc|Zn
        silver|Ag
        tin|Sn
        gold|Au
        mercury|Hg
        lead|Pb
        uranium|U
        nickel|Ni
        cobalt|Co
        platinum|Pt
        titanium|Ti
        chromium|Cr
        manganese|Mn
        iodine|I
        bromine|Br
        tungsten|W
        radium|Ra
        plutonium|Pu
        boron|B
        krypton|Kr
        xenon|Xe
        radon|Rn
    """)),
    "city_country": ("{} is a city in the country of", _pairs("""
        Osaka|Japan
        Kyoto|Japan
        Lyon|France
        Marseille|France
        Munich|Germany
        Hamburg|Germany
        Frankfurt|Germany
        Milan|Italy
        Naples|Italy
        Venice|Italy
        Florence|Italy
        Barcelona|Spain
        Seville|Spain
        Valencia|Spain
        Porto|Portugal
        Rotterdam|the Netherlands
        Zurich|Switzerland
        Geneva|Switzerland
        Krakow|Poland
        Istanbul|Turkey
        Saint Petersburg|Russia
        Alexandria|Egypt
        Lagos|Nigeria
        Johannesburg|South Africa
        Cape Town|South Africa
        Mumbai|India
        Bangalore|India
        Karachi|Pakistan
        Shanghai|China
        Shenzhen|China
        Busan|South Korea
        Melbourne|Australia
        Sydney|Australia
        Toronto|Canada
        Montreal|Canada
        Vancouver|Canada
        Chicago|the United States
        Guadalajara|Mexico
        Rio de Janeiro|Brazil
        São Paulo|Brazil
        Medellín|Colombia
        Manchester|England
        Glasgow|Scotland
        Antwerp|Belgium
        Dubai|the United Arab Emirates
        Gothenburg|Sweden
        Bergen|Norway
        Salzburg|Austria
        Thessaloniki|Greece
        Casablanca|Morocco
    """)),
    "language": ("The official language of {} is", _pairs("""
        France|French
        Germany|German
        Italy|Italian
        Spain|Spanish
        Portugal|Portuguese
        Brazil|Portuguese
        Mexico|Spanish
        Argentina|Spanish
        Japan|Japanese
        Russia|Russian
        Greece|Greek
        Turkey|Turkish
        Poland|Polish
        the Netherlands|Dutch
        Sweden|Swedish
        Norway|Norwegian
        Denmark|Danish
        Finland|Finnish
        Hungary|Hungarian
        South Korea|Korean
        Vietnam|Vietnamese
        Thailand|Thai
        Iran|Persian
        Egypt|Arabic
        Saudi Arabia|Arabic
        Israel|Hebrew
        Ukraine|Ukrainian
        Romania|Romanian
        Indonesia|Indonesian
        Iceland|Icelandic
        Bulgaria|Bulgarian
        Colombia|Spanish
        Peru|Spanish
        Austria|German
    """)),
    "currency": ("The currency of {} is the", _pairs("""
        Japan|yen
        China|yuan
        India|rupee
        Russia|ruble
        Mexico|peso
        Brazil|real
        South Africa|rand
        Switzerland|franc
        Sweden|krona
        Turkey|lira
        South Korea|won
        Thailand|baht
        Israel|shekel
        Vietnam|dong
        the United Kingdom|pound
        Germany|euro
        France|euro
        Italy|euro
        Spain|euro
        the United States|dollar
        Canada|dollar
        Australia|dollar
        Poland|zloty
        Denmark|krone
        Norway|krone
    """)),
    "author": ("{} was written by", _pairs("""
        Hamlet|William Shakespeare
        Romeo and Juliet|William Shakespeare
        Macbeth|William Shakespeare
        Pride and Prejudice|Jane Austen
        War and Peace|Leo Tolstoy
        Anna Karenina|Leo Tolstoy
        Crime and Punishment|Fyodor Dostoevsky
        Nineteen Eighty-Four|George Orwell
        Animal Farm|George Orwell
        The Great Gatsby|F. Scott Fitzgerald
        Moby-Dick|Herman Melville
        Don Quixote|Miguel de Cervantes
        The Odyssey|Homer
        The Iliad|Homer
        Oliver Twist|Charles Dickens
        Great Expectations|Charles Dickens
        A Tale of Two Cities|Charles Dickens
        The Adventures of Tom Sawyer|Mark Twain
        Frankenstein|Mary Shelley
        Dracula|Bram Stoker
        The Hobbit|J. R. R. Tolkien
        The Lord of the Rings|J. R. R. Tolkien
        Les Misérables|Victor Hugo
        The Divine Comedy|Dante Alighieri
        On the Origin of Species|Charles Darwin
        A Brief History of Time|Stephen Hawking
        The Old Man and the Sea|Ernest Hemingway
        To Kill a Mockingbird|Harper Lee
        The Catcher in the Rye|J. D. Salinger
        Brave New World|Aldous Huxley
        Ulysses|James Joyce
        One Hundred Years of Solitude|Gabriel García Márquez
        The Little Prince|Antoine de Saint-Exupéry
        Jane Eyre|Charlotte Brontë
        Wuthering Heights|Emily Brontë
        The Communist Manifesto|Karl Marx
    """)),
}


@dataclass(frozen=True)
class Fact:
    """One fact as a prompt: ``prompt[subject_start:subject_end] == subject``; the answer is the
    first token of ``" " + object`` after the prompt."""

    relation: str
    subject: str
    object: str
    prompt: str
    subject_start: int
    subject_end: int

    @property
    def target(self) -> str:
        """The text the model should continue the prompt with."""
        return " " + self.object


def facts() -> list[Fact]:
    """Every fact of `RELATIONS`, relation by relation in the order written."""
    out = []
    for relation, (template, pairs) in RELATIONS.items():
        for subject, obj in pairs:
            start = template.index("{}")
            prompt = template.format(subject)
            if subject.startswith("The "):        # "The Eiffel Tower": the subject is "Eiffel Tower"
                subject, start = subject[4:], start + 4
            out.append(Fact(relation, subject, obj, prompt, start, start + len(subject)))
    return out
