"""Records callbacks like A1111's script_callbacks (on_* register, the *_callback functions call them)."""
callback_map = {"ui_tabs": [], "ui_settings": [], "app_started": [], "script_unloaded": []}


def on_ui_tabs(fn, *, name=None):
    callback_map["ui_tabs"].append(fn)


def on_ui_settings(fn, *, name=None):
    callback_map["ui_settings"].append(fn)


def on_app_started(fn, *, name=None):
    callback_map["app_started"].append(fn)


def on_script_unloaded(fn, *, name=None):
    callback_map["script_unloaded"].append(fn)


def clear_callbacks():
    for fns in callback_map.values():
        fns.clear()


def ui_tabs_callback():
    res = []
    for fn in callback_map["ui_tabs"]:
        res += fn() or []
    return res


def ui_settings_callback():
    for fn in callback_map["ui_settings"]:
        fn()


def app_started_callback(demo, app):
    for fn in callback_map["app_started"]:
        fn(demo, app)


def script_unloaded_callback():
    for fn in reversed(callback_map["script_unloaded"]):
        fn()
