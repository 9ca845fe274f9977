"""Train Management: pick instance, FM type, model, dataset and settings; create the job; watch it right there.

Layout and wiring only: the form's handlers are in train_form.py, the job panel's in train_jobs.py, and every action
calls cloudlora.jobs.service (the same functions as the CLI and REST). Written for gradio 3.41 and 4.40 (gr.update,
`_js`, no .style / gr.Box / concurrency_limit).

What the page promises: the Trainings List comes first, visible without scrolling, and opening the tab follows the
newest running job (else the newest one) with its settings in the form; the job just created shows at once under
Create Training Job with a progress bar; the TOML editor waits collapsed behind the plain fields; refreshes change
values in place with no progress overlays; nothing above the Create button moves while a click is on its way
(messages and the estimate sit below it).
"""
from __future__ import annotations

import inspect

import time

import gradio as gr

from .. import host
from ..jobs import flux
from . import continue_panel, epochs_panel, lora_cards, train_jobs
from . import train_form as form

REFRESH_S = 3
QUIET = {"show_progress": "hidden"}  # gradio 3.41 and 4.x: no overlay, no spinner, no greyed panel


def build() -> gr.Blocks:
    from ..jobs.spec import new_client_token

    in_webui = host.current().in_webui
    default_text = form.default_config("sd15")
    with gr.Blocks(analytics_enabled=False) as tab:
        token = gr.State(value=new_client_token)
        seen_job, seen_rows, suggested = gr.State({}), gr.State({}), gr.State("")
        # What the plain fields were last given (hidden, in the page: see train_form.synced_text).
        synced = gr.Textbox(value=form.synced_text(form.knob_initial(default_text)), visible=False)
        # The Trainings List first, a few rows high (style.css): a job is never out of sight, whatever the form's
        # length.
        gr.Markdown("### Trainings List", elem_id="cloudlora_jobs_title")
        ticker = gr.Textbox(value=lambda: str(time.time()), every=REFRESH_S, visible=False)
        lora_cards.follow_pulls(ticker)  # the WebUI's Lora cards show each pulled LoRA at once
        jobs_table = gr.Dataframe(headers=train_jobs.LIST_HEADERS, value=train_jobs.rows,
                                  interactive=False, wrap=True, elem_id="cloudlora_jobs")
        with gr.Row():
            selected = gr.Textbox(label="Job ID (click a row to follow that job)", elem_id="cloudlora_job_id")
            list_refresh = gr.Button("Refresh list", elem_id="cloudlora_jobs_refresh")
        with gr.Row():
            instance = gr.Dropdown(form.instance_labels(), value=form.default_instance_label,
                                   label="Training Instance Type", elem_id="cloudlora_instance")
            fm_type = gr.Radio(form.fm_labels(), value=form.label_of_family("sd15"), label="FM Type",
                               elem_id="cloudlora_fm_type")
            flux_ok, flux_why = flux.offered(host.current().name)
            if not flux_ok:  # shown, but off: the reason says where FLUX.1 LoRAs can be trained and used
                gr.Checkbox(value=False, label="FLUX.1", interactive=False, info=flux_why,
                            elem_id="cloudlora_fm_flux_unavailable")
        with gr.Row():
            model = gr.Dropdown(choices=form.names("models"), label="Model", elem_id="cloudlora_train_model")
            dataset = gr.Dropdown(choices=form.names("datasets"), label="Dataset", elem_id="cloudlora_train_dataset")
            refresh = gr.Button("Refresh lists", elem_id="cloudlora_train_refresh")
        # Clicked by the page (javascript/cloudlora.js) each time this tab comes into view: a model or dataset just
        # uploaded or fetched in the Assets tab is in the lists without Refresh lists. Hidden by style.css.
        lists_sync = gr.Button("sync lists", elem_id="cloudlora_train_lists_sync")
        with gr.Row():
            lora_name = gr.Textbox(label="LoRA name", placeholder="mydog_v1", elem_id="cloudlora_lora_name")
            trigger_md = gr.Markdown(elem_id="cloudlora_trigger")
        continue_from = continue_panel.render()
        with gr.Row(visible=False) as sagemaker_row:
            spot = gr.Checkbox(value=True, label="Spot (up to ~70 % cheaper; resumes after interruptions)",
                               elem_id="cloudlora_spot")
            max_wait = gr.Number(value=48, label="Max wait (hours, spot)", elem_id="cloudlora_max_wait")
            max_runtime = gr.Number(value=24, label="Max runtime (hours)", elem_id="cloudlora_max_runtime")
            container = gr.Dropdown(list(form.CONTAINER_LABELS), value="Cloud LoRA trainer image",
                                    label="Container", elem_id="cloudlora_container")
        image_uri = gr.Textbox(label="Kohya sample container image URI", visible=False,
                               placeholder="123456789012.dkr.ecr.us-east-1.amazonaws.com/kohya-ss:latest",
                               elem_id="cloudlora_image_uri")
        sagemaker_note = gr.Markdown("", visible=False)
        start = form.knob_initial(default_text)
        knob_boxes = []
        for row in (form.KNOBS[:4], form.KNOBS[4:]):
            with gr.Row():
                knob_boxes += [gr.Textbox(value=start[k], label=k, elem_id=f"cloudlora_knob_{k}",
                                          placeholder=form.PLACEHOLDERS.get(k, "")) for k in row]
        knob_msg = gr.Markdown(elem_id="cloudlora_knob_msg")
        with gr.Accordion("config_params (Kohya TOML: every setting)", open=False, elem_id="cloudlora_config_box"):
            config = gr.Textbox(value=default_text, lines=18, max_lines=60, label="config_params",
                                elem_id="cloudlora_config")
            format_btn = gr.Button("Format config Params", elem_id="cloudlora_format_config")
        config_msg = gr.Markdown(elem_id="cloudlora_config_msg")
        create_btn = gr.Button("Create Training Job", variant="primary", elem_id="cloudlora_create_job")
        estimate_md = gr.Markdown(elem_id="cloudlora_estimate")
        create_msg = gr.Markdown(elem_id="cloudlora_create_msg")

        # The selected job (the one just created, or one picked in the list), right under Create.
        job_panel = gr.HTML(train_jobs.NO_JOB, elem_id="cloudlora_job_status")
        explanation = gr.Markdown(elem_id="cloudlora_job_explanation")
        with gr.Row():
            stop_btn = gr.Button("Stop", visible=False, elem_id="cloudlora_stop")
            resume_btn = gr.Button("Resume", visible=False, elem_id="cloudlora_resume")
            delete_btn = gr.Button("Delete record…", visible=False, elem_id="cloudlora_delete")
            output_pick = gr.Dropdown(label="LoRA file", choices=[], visible=False, elem_id="cloudlora_output_file")
            pull_btn = gr.Button("Pull LoRA", visible=False, elem_id="cloudlora_pull")
            tb_btn = gr.Button("Open TensorBoard", visible=False, elem_id="cloudlora_tensorboard")
            use_btn = gr.Button("Use in txt2img", visible=False, elem_id="cloudlora_use_txt2img")
        with gr.Row(visible=False) as confirm_row:
            confirm_md = gr.Markdown()
            delete_yes = gr.Button("Yes, delete the record", variant="stop", elem_id="cloudlora_delete_yes")
            delete_no = gr.Button("Keep it", elem_id="cloudlora_delete_no")
        action_msg = gr.Markdown(elem_id="cloudlora_action_msg")
        log_box = gr.HTML(train_jobs.log_html([]), label="Log", elem_id="cloudlora_log")
        with gr.Row():
            # No title (the label says "Loss"), no width (gradio 4 warns about it; the plot fills its column).
            loss_plot = gr.LinePlot(x="step", y="loss", color="tag", label="Loss", elem_id="cloudlora_loss_plot",
                                    height=300)
            samples = gr.Gallery(label="Samples", elem_id="cloudlora_samples")
        use_text = gr.Textbox(visible=False)

        # After a job: continue training from its LoRA, or compare its epochs with the WebUI's own txt2img.
        continue_panel.wire(continue_from, fm_type=fm_type, selected=selected, model=model, dataset=dataset,
                            lora_name=lora_name, message=action_msg)
        epochs_panel.render(selected, ticker)

        for c in [instance, fm_type, model, dataset, lora_name, spot, max_wait, max_runtime, container, image_uri,
                  config, selected, jobs_table, log_box, use_text, ticker, output_pick, job_panel, synced] + knob_boxes:
            c.do_not_save_to_config = True

        # The form.
        instance.change(form.on_instance, [instance], [sagemaker_row, sagemaker_note], **QUIET)
        container.change(form.on_container, [container], [image_uri], **QUIET)
        family_outputs = [fm_type, config, config_msg] + knob_boxes + [synced, instance]
        # FM Type follows the model the user picks (input), not the value the page's opening or a list refresh sets
        # (change): under load that answer could come after the user had picked another FM Type and turn it back.
        model.input(form.on_model, [model, fm_type, config, instance], family_outputs, **QUIET)
        fm_type.input(form.on_family, [fm_type, config, instance], family_outputs, **QUIET)
        dataset.change(form.on_dataset, [dataset, lora_name, suggested], [trigger_md, lora_name, suggested], **QUIET)
        refresh.click(form.refresh_choices, [model, dataset, fm_type], [model, dataset])
        lists_sync.click(form.refresh_choices, [model, dataset, fm_type], [model, dataset], **QUIET)
        tab.load(train_jobs.opening, [model, dataset, fm_type, instance, selected],
                 [selected, model, dataset, fm_type, instance, lora_name, config] + knob_boxes + [synced], **QUIET)
        format_btn.click(form.format_config, [config, fm_type], [config, config_msg]) \
            .then(form.knob_values_synced, [config], knob_boxes + [synced], **QUIET)
        # The plain fields and the TOML stay in step both ways: a field is checked as it is typed and written on
        # leaving it; a TOML typed or pasted updates the fields.
        for key, box in zip(form.KNOBS, knob_boxes):
            box.input(form.check_knob(key), [box, config, fm_type], [knob_msg], **QUIET)
            box.blur(form.set_knob(key), [box, config, fm_type, synced], [config, knob_msg, synced], **QUIET)
            box.submit(form.set_knob(key), [box, config, fm_type, synced], [config, knob_msg, synced], **QUIET)
        config.input(form.knob_values_synced, [config], knob_boxes + [synced], **QUIET)
        config.blur(form.knob_values_synced, [config], knob_boxes + [synced], **QUIET)
        for trigger in (config, dataset, instance, spot, fm_type):
            trigger.change(form.estimate_text, [config, fm_type, dataset, instance, spot], [estimate_md], **QUIET)

        # Create: disabled while submitting; the client token makes a double submit one job; the plain fields go
        # with the click, so it acts on what the user sees even while a field still has focus.
        create_inputs = [instance, fm_type, model, dataset, lora_name, config, spot, max_wait, max_runtime, container,
                         image_uri, token, continue_from, synced] + knob_boxes
        create_btn.click(lambda: (gr.update(interactive=False, value="Submitting…"), ""), None,
                         [create_btn, create_msg], **QUIET) \
            .then(form.create_job_live, create_inputs, [create_msg, token, selected, config], **QUIET) \
            .then(lambda: gr.update(interactive=True, value="Create Training Job"), None, [create_btn], **QUIET) \
            .then(train_jobs.list_rows, [seen_rows], [jobs_table, seen_rows], **QUIET)

        # The job panel and the list, refreshed in place with every tick.
        detail_inputs = [selected, output_pick, seen_job]
        detail_outputs = [job_panel, log_box, loss_plot, samples, explanation, use_text, stop_btn, delete_btn,
                          pull_btn, tb_btn, output_pick, resume_btn, action_msg, use_btn,
                          seen_job]  # train_jobs.OUTPUTS
        ticker.change(train_jobs.list_rows, [seen_rows], [jobs_table, seen_rows], **QUIET)
        ticker.change(train_jobs.tick_details, detail_inputs, detail_outputs, **QUIET)
        selected.change(train_jobs.selected_details, detail_inputs, detail_outputs, **QUIET)
        list_refresh.click(train_jobs.list_rows, None, [jobs_table, seen_rows])
        jobs_table.select(train_jobs.on_select, [jobs_table], [selected], **QUIET)
        stop_btn.click(train_jobs.stop_job, [selected], [action_msg]) \
            .then(train_jobs.job_details, detail_inputs, detail_outputs, **QUIET)
        resume_btn.click(train_jobs.resume_job, [selected], [action_msg]) \
            .then(train_jobs.job_details, detail_inputs, detail_outputs, **QUIET) \
            .then(train_jobs.list_rows, [seen_rows], [jobs_table, seen_rows], **QUIET)
        delete_btn.click(train_jobs.ask_delete, [selected], [confirm_row, confirm_md], **QUIET)
        delete_no.click(lambda: gr.update(visible=False), None, [confirm_row], **QUIET)
        delete_yes.click(train_jobs.delete_job, [selected], [confirm_row, action_msg, selected]) \
            .then(train_jobs.list_rows, [seen_rows], [jobs_table, seen_rows], **QUIET)
        pull_btn.click(train_jobs.pull_job, [selected, output_pick], [action_msg]) \
            .then(train_jobs.job_details, detail_inputs, detail_outputs, **QUIET)
        tb_btn.click(train_jobs.open_tensorboard, [selected], [action_msg])
        if in_webui:
            # `_js` on gradio 3.41 (A1111), `js` on 4.40 (Forge translates `_js`, but only where its patch ran).
            js = "js" if "js" in inspect.signature(use_btn.click).parameters else "_js"
            use_btn.click(None, [use_text], None, **{js: "cloudloraUseInTxt2img"})
    return tab
