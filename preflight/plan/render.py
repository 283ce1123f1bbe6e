"""The plan as a terminal report: the model, the memory table in GiB (2^30 bytes, said so), and
each recommendation with its settings."""

from __future__ import annotations

import json
from typing import Any

GIB = 2**30


def _gib(value: int | float | None) -> str:
    return "-" if value is None else f"{value / GIB:,.2f}"


def render_plan(console: Any, plan: dict[str, Any]) -> None:
    from rich.table import Table

    m = plan["model"]
    exact = "exact" if m["exact"] else "approximate"
    console.print(f"[bold]plan[/bold]: {m['name']} ({m['model_type']}; {m['source']})")
    console.print(f"  parameters: {plan['param_count']:,} ({exact}); active per token {plan['active_params']:,}; "
                  f"trainable {plan['trainable_params']:,}; LM head {plan['lm_head_params']:,}")
    for note in m["notes"]:
        console.print(f"  [yellow]note[/yellow]: {note}")
    t, c = plan["training"], plan["cluster"]
    console.print(f"  training: {t['method']}, {t['precision']}, {t['optimizer']}, seq {t['seq_len']}, "
                  f"global batch {plan['global_batch']} samples ({plan['tokens_per_step']:,} tokens)")
    console.print(f"  cluster: {c['nodes']} node(s) x {c['gpus_per_node']} GPUs, {_gib(c['gpu_memory'])} GiB each; "
                  f"buses {c['intra_node_bus_bandwidth'] / 1e9:.0f} GB/s inside a node "
                  f"({c['sources'].get('intra_bw', '')}), {c['inter_node_bus_bandwidth'] / 1e9:.1f} GB/s across "
                  f"({c['sources'].get('inter_bw', '')})")
    table = Table(title=f"memory per GPU, GiB (2^30 bytes): {plan['layout_summary']}", title_justify="left")
    table.add_column("component")
    table.add_column("GiB", justify="right")
    for key in ("parameters", "gradients", "optimizer_states", "activations", "buffers", "overhead"):
        table.add_row(key.replace("_", " "), _gib(plan[key]))
    table.add_row(f"[bold]total (peak, {plan['peak_phase']})[/bold]", f"[bold]{_gib(plan['total'])}[/bold]")
    table.add_row("GPU memory", _gib(c["gpu_memory"]))
    if plan["host_bytes_per_node"]:
        table.add_row("host RAM per node (offload)", _gib(plan["host_bytes_per_node"]))
    console.print(table)
    if not plan["fits"]:
        console.print(f"[red]nothing fits[/red]: the most frugal layout needs {_gib(plan['total'])} GiB per GPU "
                      f"({plan['layouts_evaluated']} layouts tried)")
        for i, change in enumerate(plan["changes_that_fit"]):
            lead = "smallest change" if i == 0 else "also fits with"
            console.print(f"  {lead}: [bold]{change['what']}[/bold]: {change['detail']}")
        if not plan["changes_that_fit"]:
            console.print("  no single change tried (offload, up to 128x the nodes, LoRA/QLoRA, shorter sequences) fits")
        return
    for i, rec in enumerate(plan["recommendations"], 1):
        console.print(f"\n[bold]#{i}[/bold] {rec['summary']}")
        console.print(f"   {_gib(rec['memory']['total'])} GiB per GPU; {rec['why']}")
        s = rec["settings"]
        console.print(f"   {s['torchrun']}")
        console.print("   TrainingArguments: " + ", ".join(f"{k}={v}" for k, v in s["training_arguments"].items()))
        console.print("   LLaMA-Factory: " + ", ".join(f"{k}: {v}" for k, v in s["llamafactory"].items()))
        if "deepspeed" in s:
            console.print("   ds_config.json: " + json.dumps(s["deepspeed"]), soft_wrap=True)
        if "accelerate_fsdp" in s:
            console.print("   accelerate config (FSDP):\n" + "\n".join("     " + ln for ln in s["accelerate_fsdp"].splitlines()))
        if "megatron" in s:
            console.print(f"   Megatron-LM: {s['megatron']}")
        if "note" in s:
            console.print(f"   [yellow]note[/yellow]: {s['note']}")
    console.print(f"\n[dim]{plan['layouts_evaluated']} layouts evaluated; bytes in --json; GiB = 2^30 bytes[/dim]")
