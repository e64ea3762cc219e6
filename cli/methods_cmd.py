"""``pgc methods``: the registered quantization method families, one line each."""

import click

from pgcompress.cli.options import echo_json, json_option
from pgcompress.registry import method_families


@click.command()
@json_option
def methods(as_json):
    """List the quantization methods: name pattern, an example name, what it does.

    <mods> are the optional modifiers the summary lists (e.g. int6-gptq-g64+lqer-r8). Pass a name,
    or GLOB=NAME overrides, to 'pgc pack --method'.

    \b
    JSON: {"methods": [{"pattern", "example", "regex", "summary"}]}, in the order shown.

    Example: pgc methods
    """
    families = method_families()
    if as_json:
        echo_json({"methods": [{"pattern": f.readable, "example": f.example, "regex": f.regex.pattern,
                                "summary": f.summary} for f in families]})
        return
    width = max(len(f.readable) for f in families)
    example_width = max(len(f.example) for f in families) + len("e.g. ")
    for f in families:
        click.echo(f"{f.readable:<{width}}  {'e.g. ' + f.example:<{example_width}}  {f.summary}")
