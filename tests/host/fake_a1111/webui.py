"""The WebUI process (fake A1111 1.10.1): initialize, build the UI, launch gradio, fire app_started, wait.

The order is A1111's: extensions listed, models listed, scripts/*.py loaded (they register callbacks), then
before_ui, create_ui (ui_settings, txt2img/img2img, ui_tabs), demo.queue(64), demo.launch(prevent_thread_lock=True),
the --api routes, app_started_callback(demo, app). Ctrl+C (SIGINT) exits at once, as A1111's handler does.
"""
import os
import signal
import time

from modules import shared
from modules.shared_cmd_options import cmd_opts


def initialize():
    def sigint_handler(sig, frame):
        print(f"Interrupted with signal {sig} in {frame}", flush=True)
        os._exit(0)

    signal.signal(signal.SIGINT, sigint_handler)
    from modules import extensions, scripts, sd_models

    extensions.list_extensions()
    sd_models.list_models()
    scripts.load_scripts()


def webui():
    initialize()
    from modules import api, script_callbacks, ui
    from modules.paths_internal import script_path

    script_callbacks.before_ui_callback()
    shared.demo = ui.create_ui()
    shared.demo.queue(64)
    app, local_url, _share_url = shared.demo.launch(
        server_name="0.0.0.0" if cmd_opts.listen else "127.0.0.1", server_port=cmd_opts.port,
        prevent_thread_lock=True, allowed_paths=[script_path],
        app_kwargs={"docs_url": "/docs", "redoc_url": "/redoc"})
    # A1111 drops gradio's open CORS policy.
    app.user_middleware = [x for x in app.user_middleware if x.cls.__name__ != "CORSMiddleware"]
    app.middleware_stack = None  # rebuilt without it, as A1111's setup_middleware does
    app.build_middleware_stack()
    if cmd_opts.api:
        api.create_api(app)
    script_callbacks.app_started_callback(shared.demo, app)
    print(f"Running on local URL: {local_url}", flush=True)
    while True:
        time.sleep(5)
