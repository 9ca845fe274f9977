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
