"""The rubric DSL: the schema (pydantic), YAML loading with line numbers and `extends`,
diagnostics that name file:line and a fix, sandboxed prompt templates and what they see."""
