"""Structured output: JSON schemas for Python types, and parsing model text into them."""

from .output import extract_json, format_instruction, json_schema_for, parse_as, response_format_for

__all__ = ["extract_json", "format_instruction", "json_schema_for", "parse_as", "response_format_for"]
