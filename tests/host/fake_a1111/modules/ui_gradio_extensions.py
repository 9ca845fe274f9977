"""Puts A1111's script.js and every extension's javascript/*.js into the page's head (file= URLs, as A1111 does)."""
import os

import gradio as gr

from modules import scripts
from modules.paths_internal import script_path

_original = gr.routes.templates.TemplateResponse


def webpath(fn):
    return f"file={fn}?{os.path.getmtime(fn)}"


def javascript_html():
    head = f'<script type="text/javascript" src="{webpath(os.path.join(script_path, "script.js"))}"></script>\n'
    for script in scripts.list_scripts("javascript", ".js"):
        head += f'<script type="text/javascript" src="{webpath(script.path)}"></script>\n'
    return head


def css_html():
    return "".join(f'<link rel="stylesheet" property="stylesheet" href="{webpath(fn)}">'
                   for fn in scripts.list_files_with_name("style.css"))


def reload_javascript():
    js, css = javascript_html(), css_html()

    def template_response(*args, **kwargs):
        res = _original(*args, **kwargs)
        res.body = res.body.replace(b"</head>", f"{js}</head>".encode("utf8"))
        res.body = res.body.replace(b"</body>", f"{css}</body>".encode("utf8"))
        res.init_headers()
        return res

    gr.routes.templates.TemplateResponse = template_response
