"""Every file wdimage writes from a template goes through here: the one jinja2 module.

`environment(package, ...)` is the jinja2 environment over the `templates/` directories of the named packages
(the first one's templates win; a later one lends its base templates, e.g. the drill's HTML frame to a report of
another package). HTML and XML templates are autoescaped; every other file is rendered as written, with
undefined values an error, not an empty string.
"""

import functools

import jinja2

AUTOESCAPED = ("html.j2", "svg.j2", "xml.j2")


@functools.cache
def environment(*packages: str) -> jinja2.Environment:
    if not packages:
        raise ValueError("environment() needs at least one package")
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader([jinja2.PackageLoader(package, "templates") for package in packages]),
        autoescape=jinja2.select_autoescape(enabled_extensions=AUTOESCAPED, default_for_string=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    return env


def render(packages: tuple[str, ...], template: str, **values) -> str:
    """`template` of the first of `packages` (or a later one's) rendered with `values`."""
    return environment(*packages).get_template(template).render(**values)
