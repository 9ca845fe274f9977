// Cloud LoRA Trainer: small page helpers. The WebUI loads every javascript/*.js into one global namespace,
// so every name here starts with "cloudlora". The tabs call them through `_js=` on events.

function cloudloraApp() {
    // A1111 renders into a shadow root (gradioApp()); the standalone app does not.
    return typeof gradioApp === "function" ? gradioApp() : document;
}

// Appends `text` (e.g. "<lora:demo:1> demo") to the txt2img prompt and switches to txt2img.
// Returns its argument so it can sit in a `_js` chain without changing the event's inputs.
function cloudloraUseInTxt2img(text) {
    var area = cloudloraApp().querySelector("#txt2img_prompt textarea");
    if (area && text) {
        var current = area.value.trim();
        area.value = current ? current + ", " + text : text;
        // gradio listens to "input" to update its state.
        area.dispatchEvent(new Event("input", {bubbles: true}));
    }
    if (typeof switch_to_txt2img === "function") {
        switch_to_txt2img();
    }
    return text;
}

// Makes a new LoRA file show in the Lora cards of txt2img and img2img, by clicking their hidden refresh buttons
// (A1111 keeps the cards as HTML built once). The Train tab calls it after each pull (extension/ui/lora_cards.py).
function cloudloraRefreshLoras() {
    var clicked = 0;
    ["#txt2img_lora_extra_refresh_internal", "#img2img_lora_extra_refresh_internal"].forEach(function(sel) {
        var button = cloudloraApp().querySelector(sel);
        if (button) {
            button.click();
            clicked++;
        }
    });
    return clicked;
}

// The Train tab's Model and Dataset lists follow the store: each time the tab comes into view (a WebUI top-level tab
// or the standalone app's tab, gradio 3.41 and 4.40 alike), its hidden list refresh is clicked, which keeps the
// user's picks while they exist (extension/ui/train_tab.py). The first sight of the tab only records whether it is
// shown: opening the page fills the lists by itself.
var cloudloraTrainShown = null;
function cloudloraWatchTrainTab() {
    var shown_ = cloudloraApp().querySelector("#cloudlora_train_refresh");
    var sync = cloudloraApp().querySelector("#cloudlora_train_lists_sync");
    if (!shown_ || !sync) {
        return;
    }
    var shown = shown_.getClientRects().length > 0;
    if (cloudloraTrainShown === false && shown) {
        sync.click();
    }
    cloudloraTrainShown = shown;
}
if (typeof window !== "undefined" && !window.cloudloraTrainWatch) {
    window.cloudloraTrainWatch = setInterval(cloudloraWatchTrainTab, 400);
}
