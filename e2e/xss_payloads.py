"""Messages that would run script, restyle the page or hijack htmx if rendered as HTML.

Every payload that executes sets `window.__xss` (or opens a dialog), so a viewer page
where either happened has run attacker code. Each has no leading or trailing whitespace
(the form strips it) and fits the 4,000-character limit, so the stored text must equal
it exactly; line breaks are "\n" (the composer is a textarea). Messages are formatted
(rooms/formatting.py: links, `code`, fenced blocks), so the last group aims at that.
"""

RUN = "window.__xss=1"

PAYLOADS: list[str] = [
    # Script elements, in every spelling a sloppy filter misses
    f"<script>{RUN}</script>",
    f"<SCRIPT>{RUN}</SCRIPT>",
    f"<script src=data:text/javascript,{RUN}></script>",
    f"<scr<script>ipt>{RUN}</scr</script>ipt>",
    f"</p><script>{RUN}</script><p>",
    f"</article></div><script>{RUN}</script>",
    "<script>alert(document.domain)</script>",
    # Event handlers
    f"<img src=x onerror={RUN}>",
    f'<img src="x" onerror="{RUN}">',
    "<img src=x onerror=alert(1)//",
    f"<svg onload={RUN}>",
    f"<svg><script>{RUN}</script></svg>",
    f"<body onload={RUN}>",
    f"<details open ontoggle={RUN}>",
    f"<input autofocus onfocus={RUN}>",
    f"<video><source onerror={RUN}></video>",
    f"<audio src=x onerror={RUN}>",
    f"<marquee onstart={RUN}>x</marquee>",
    f'<div style="width:1000px;height:1000px" onmouseover="{RUN}">hover me</div>',
    f"<math><mtext><table><mglyph><style><img src=x onerror={RUN}>",
    # Frames, objects, javascript: and data: URLs
    f"<iframe src=javascript:{RUN}></iframe>",
    f"<iframe srcdoc='<script>parent.{RUN}</script>'></iframe>",
    f"<object data=javascript:{RUN}></object>",
    f"<embed src=javascript:{RUN}>",
    f"<a href=javascript:{RUN}>click me</a>",
    f"<a href='jav&#x09;ascript:{RUN}'>tab-split scheme</a>",
    f'<form action="javascript:{RUN}"><button>go</button></form>',
    f"<meta http-equiv=refresh content='0;url=javascript:{RUN}'>",
    f"<base href=javascript:{RUN}//>",
    "<link rel=stylesheet href=data:text/css,body{display:none}>",
    # htmx: out-of-band swaps onto the page's own ids, attributes that fetch or run code
    '<div id="online-users" hx-swap-oob="true">x</div>',
    '<form id="composer" hx-swap-oob="true"><input name="body" value="hijacked"></form>',
    '<div id="chat-live" hx-swap-oob="innerHTML">everything is gone</div>',
    '<div id="chat-log" hx-swap-oob="outerHTML"></div>',
    '<div id="connection-status" hx-swap-oob="true">Connected to evil.example</div>',
    '<body hx-swap-oob="true"><h1>defaced</h1></body>',
    '<div hx-get="/accounts/logout/" hx-trigger="load" hx-swap="outerHTML">x</div>',
    f'<div hx-on:htmx:load="{RUN}">x</div>',
    f'<img src=x hx-on::load="{RUN}" hx-trigger="load">',
    '<button hx-post="/rooms/general/messages/" hx-vals=\'{"body":"spam"}\' hx-trigger="load">',
    '<div hx-ext="ws" ws-connect="/ws/rooms/other/?after=0">x</div>',
    f'<div hx-trigger="load" hx-vals="js:{{a:{RUN}}}" hx-get="/">x</div>',
    f'<template><img src=x onerror="{RUN}"></template>',
    f'<template shadowrootmode="open"><img src=x onerror="{RUN}"></template>',
    # HTML entities and encodings: must stay the literal text typed
    f"&lt;script&gt;{RUN}&lt;/script&gt;",
    "&amp;lt; &#60; &#x3C; &quot; &apos; &nbsp; &copy;",
    f"%3Cscript%3E{RUN}%3C/script%3E",
    f"\\u003cscript\\u003e{RUN}\\u003c/script\\u003e",
    f"<!--<img src=x onerror={RUN}>-->",
    f"<![CDATA[<script>{RUN}</script>]]>",
    f"<plaintext><xmp><noscript><img src=x onerror={RUN}></noscript>",
    # Unicode: right-to-left override, zero-width characters, emoji, combining marks
    "\u202egnp.exe\u202c harmless? \u200b\u200d\ufeff",
    "👩‍👩‍👧‍👦 🏳️‍🌈 日本語 العربية עברית Ελληνικά",
    "Z\u0351\u0358\u0362a\u0353\u035al\u0347g\u0318o\u0324",
    f"＜script＞{RUN}＜/script＞",
    f"line\u2028separator<script>{RUN}</script>\u2029paragraph",
    # Template syntax: data, never template source
    "{{ user.password }} {{ request.session }} {{ settings.SECRET_KEY }}",
    "{% debug %}{% load static %}{% csrf_token %}",
    "{{ 7*7 }} ${7*7} #{7*7} <%= 7*7 %>",
    # Quotes, backticks, JSON-breaking characters
    f"\"'`;{RUN};//",
    f'"}}]}}; {RUN}; {{"body":"',
    f"`${{{RUN}}}`",
    "'\"><img src=x onerror=alert(1)>",
    # CSS injection
    "<style>body{display:none}#composer{visibility:hidden}</style>",
    '<div style="position:fixed;inset:0;background:red;z-index:9999">overlay</div>',
    "</style><style>*{color:red!important}</style>",
    # The formatting: links (http and https only), `code` and fenced blocks
    f"javascript:{RUN}",
    f"JaVaScRiPt:{RUN}//https://x.test/",
    f"[click me](javascript:{RUN})",
    f'[click me](https://x.test/"onclick="{RUN})',
    f"data:text/html,<script>{RUN}</script>",
    f"//evil.test/{RUN}",
    f'https://x.test/"onmouseover="{RUN}"',
    f"https://x.test/'onmouseover='{RUN}'",
    f"""https://x.test/?q="'><img src=x onerror={RUN}>""",
    f"https://a.test/<script>{RUN}</script>",
    f"http://x.test/&quot;onmouseover=&quot;{RUN}",
    'https://x.test/#" hx-get="/accounts/logout/" hx-trigger="load',
    f'<a href="https://x.test" onclick="{RUN}">https://x.test</a>',
    f"https://x.test/`<img src=x onerror={RUN}>`",
    f"`<img src=x onerror={RUN}>`",
    f"`</code><img src=x onerror={RUN}>`",
    f"`a`<img src=x onerror={RUN}>`b`",
    f"`<script>{RUN}</script>",
    f"```\n</code></pre><img src=x onerror={RUN}>\n```",
    f"```html\n<script>{RUN}</script>\n```",
    f'```"><svg onload={RUN}>\nx\n```',
    f"```\n<svg onload={RUN}>",
    f"text\n```\n`<b>` https://x.test/<i>\n```\n<img src=x onerror={RUN}>",
    f"line one\n<script>{RUN}</script>\nline three",
    f"https://x.test/\u2028<script>{RUN}</script>",
    # Very long lines
    "A" * 3000 + f"<script>{RUN}</script>",
    "<b>" * 200 + "deep" + "</b>" * 200,
    "x" * 4000,
]
