#!/usr/bin/env python3
"""Writes benign.jsonl: realistic benign requests (same shape as crs-attacks.jsonl, class "benign").

Usage: make-benign.py > benign.jsonl   (deterministic; prose from /usr/share/common-licenses)

Browsers' and API clients' requests to a shop and its JSON API: search terms and prose that
use SQL and shell words ("select", "union", "drop", "or", "&", ";"), names with apostrophes,
addresses, prices, e-mails, dates, paths, cookies, form posts, JSON bodies, multipart uploads;
comments that quote code and shell words, file names with `;`, `|` and `&`, and binary uploads
(random bytes, seeded) labelled application/octet-stream and image/png.
"""
import itertools, json, random, urllib.parse

random.seed(17)
AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "curl/8.5.0", "python-requests/2.32.3", "okhttp/4.12.0", "Go-http-client/1.1",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
]
NAMES = ["O'Brien", "D'Angelo", "Mary-Jane O'Neil", "José Álvarez", "Zoë Saldaña", "Björn Ängström",
         "Nguyễn Văn An", "李小龙", "Jean-Luc Picard", "Anne d'Arc", "McDonald", "Van der Berg",
         "Shaquille O'Neal", "Renée Zellweger", "Dr. Ruth Westheimer, PhD", "Select Comfort Inc.",
         "Union Pacific", "Drop Box Storage Ltd", "Grant & Sons; est. 1902", "AT&T"]
SEARCHES = ["select a size", "union jack t-shirt", "drop shipping", "table and chairs",
            "cat food", "ls 400 sedan", "rock & roll", "black or white", "tom & jerry dvd",
            "script writing course", "alert bracelet", "id card holder", "wget vs curl book",
            "1/2 inch pipe", "50% off", "C# in depth", "what is 2+2?", "\"exact phrase\" search",
            "women's shoes", "men's 10.5", "it's a kind of magic", "rm -rf? no thanks",
            "select * from life", "where is my order?", "delete my account please",
            "update billing address", "insert coin", "sleep mask", "benchmark results 2024",
            "passwd reset not working", "/etc is not a path here", "on sale now", "java coffee beans",
            "python for kids", "<3 gifts for her", "a < b > c", "x=1&y=2", "email me @ home",
            "e-mail: a.b@example.com", "phone (555) 123-4567", "price $19.99 (tax incl.)"]
# Comments as people write them: code and commands quoted in passing, lists with `|` and `;`,
# sentences starting with words that are also Unix commands.
COMMENTS = ["Try `npm install` then `npm run build`, it fixed it for me",
            "for (let i = 0; i < n; i++) { total += prices[i]; }",
            "def greet(name): return f'Hello {name}'", "my.cnf has max_connections=100; ok",
            "Tom's Diner | open 9-5; closed Sundays", "Rock | Pop | Jazz | Classical",
            "Ship to 221B Baker St., London NW1 6XE; leave it with the neighbour",
            "Q&A: what's the difference between 'select' and 'choose'?",
            "Drop me a line at jo@example.com; I'll reply", "Union Station, Chicago; then the Red Line",
            "please delete from my wishlist the red one", "order by Friday or else it ships Monday",
            "C:\\Users\\Ana\\Documents\\cv.pdf", "~/Downloads/invoice-2024.pdf",
            "a && b || c was on the logic exam", "5 > 3 and 2 < 4, easy", "50% off | 2 for 1 | free shipping",
            "#summer @shop.example", "Size: 10½ (EU 44)", "if x == y then z, says the manual",
            "Ingredients: flour, water; salt & yeast (optional)", "1/2 cup sugar; 3 eggs; bake at 180°C",
            "sudo make me a sandwich", "The Cat in the Hat | Dr. Seuss", "less is more",
            "time flies; fruit flies like a banana", "Kill Bill: Vol. 1 | Tarantino", "Find & replace all",
            "Head & Shoulders shampoo", "tail light; left side", "ping pong table | 9ft",
            "sleep; eat; repeat", "echo dot (3rd gen)", "Python for data analysis; 2nd edition",
            "who | what | where", "set of 4 chairs; oak", "export to CSV | PDF",
            "history of the union jack", "AT&T; Verizon; T-Mobile", "more than I expected; 5 stars",
            "cut the tags off & wash cold", "sort by price | newest", "touch screen; works with gloves",
            "nice fit; true to size", "last one in stock?", "watch out: runs small (order +1)",
            "{size, colour} both wrong", "price was $19.99 (was $25)", "great!! would buy again!",
            "<3 it", "see ya :-)", "a/b testing results [draft]", "rating: 4/5; delivery: 2 days"]
FILES = ["report;final.pdf", "notes | v2.txt", "Q3 results & forecast.xlsx", "photo (1).jpg",
         "cv_2024-06-01.docx", "scan #12.pdf", "menu [draft].png", "tom's recipe.txt",
         "a;b;c.csv", "data|export.json", "résumé.pdf", "..hidden-ish.txt"]
WORDS = ("order shipping cart checkout review rating gift card coupon size colour red blue green "
         "small medium large return refund invoice account profile settings wishlist store "
         "delivery express tomorrow monday weekend sale new popular brand cotton leather").split()
PATHS = ["/", "/index.html", "/products", "/products/42", "/products/42/reviews", "/cart",
         "/checkout/step-2", "/account/orders/2024-0001", "/static/js/app.3f2a9c.js",
         "/static/css/main.css", "/images/logo@2x.png", "/api/v1/orders", "/api/v1/orders/981",
         "/api/v1/users/me", "/search", "/blog/2024/06/why-we-love-unions", "/help/faq",
         "/docs/select-the-right-size", "/api/v2/items/abc-123/variants", "/robots.txt",
         "/favicon.ico", "/.well-known/security.txt", "/files/report%20Q3.pdf", "/café/menu",
         "/en-US/products/table-and-chairs", "/api/v1/search?", "/healthz", "/metrics"]

def prose():
    lines = []
    for name in ["GPL-3", "Apache-2.0", "LGPL-3", "MPL-2.0"]:
        try:
            text = open(f"/usr/share/common-licenses/{name}", encoding="utf-8").read()
        except OSError:
            continue
        lines += [l.strip() for l in text.splitlines() if len(l.strip()) > 30]
    random.shuffle(lines)
    return lines[:400]

def headers(agent, extra=()):
    h = [["Host", "shop.example"], ["User-Agent", agent],
         ["Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"],
         ["Accept-Language", "en-US,en;q=0.9,fr;q=0.8"], ["Accept-Encoding", "gzip, deflate, br"],
         ["Cookie", f"session=s%3A{random.getrandbits(64):x}.Zm9vYmFy%2Bc2Vj; _ga=GA1.2.{random.randint(10**8, 10**9)}.1718000000; theme=dark; cart=%7B%22items%22%3A3%7D"],
         ["Referer", "https://shop.example/products?page=2&sort=price%20asc"]]
    return h + [list(e) for e in extra]

def emit(method, uri, hdrs, data=""):
    print(json.dumps({"class": "benign", "method": method, "uri": uri, "headers": hdrs,
                      "data": data}, ensure_ascii=False))

q = urllib.parse.quote_plus
texts = SEARCHES + NAMES + COMMENTS + prose()
for i, text in enumerate(texts):
    agent = AGENTS[i % len(AGENTS)]
    emit("GET", f"/search?q={q(text)}&page={i % 5 + 1}&sort=relevance", headers(agent))
    form = f"name={q(random.choice(NAMES))}&email=user{i}%40example.com&comment={q(text)}&rating={i % 5 + 1}"
    emit("POST", "/reviews", headers(agent, [["Content-Type", "application/x-www-form-urlencoded"]]), form)
    body = json.dumps({"customer": {"name": random.choice(NAMES), "email": f"u{i}@example.org"},
                       "items": [{"sku": f"SKU-{i:05}", "qty": i % 3 + 1, "note": text}],
                       "shipping": {"address": f"{i} Union St; Apt 4", "city": "Saint-Étienne"},
                       "coupon": None, "gift": i % 2 == 0}, ensure_ascii=False)
    emit("POST", "/api/v1/orders", headers(agent, [["Content-Type", "application/json"]]), body)
for i, path in enumerate(PATHS * 3):
    emit("GET", path, headers(AGENTS[i % len(AGENTS)]))
for i, (a, b) in enumerate(itertools.islice(itertools.combinations(WORDS, 2), 300)):
    emit("GET", f"/products?tag={a}&tag={b}&min_price=10&max_price=99.50&in_stock=true",
         headers(AGENTS[i % len(AGENTS)]))
boundary = "----WebKitFormBoundary7MA4YWxkTrZu0gW"
for i, text in enumerate(SEARCHES + COMMENTS):
    name = FILES[i % len(FILES)] if i % 3 == 0 else f"IMG_{i:04}.jpg"
    data = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\n{text}\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"photo\"; filename=\"{name}\"\r\n"
            f"Content-Type: image/jpeg\r\n\r\n\xff\xd8\xff\xe0JFIF binary\r\n--{boundary}--\r\n")
    emit("POST", "/account/photos", headers(AGENTS[i % len(AGENTS)],
         [["Content-Type", f"multipart/form-data; boundary={boundary}"]]), data)
# Binary uploads: each byte a character U+0000-U+00FF, so the request carries it in UTF-8.
for i in range(40):
    data = "".join(chr(random.getrandbits(8)) for _ in range(512 * (i % 8 + 1)))
    kind = "application/octet-stream" if i % 2 else "image/png"
    emit("PUT", f"/api/v1/files/upload-{i}", headers(AGENTS[i % len(AGENTS)], [["Content-Type", kind]]), data)
