"""Schedules: values of the frame ``t`` from keyframes and safe expressions (``expressions``: the language;
``keyframes``: number and text schedules built on it)."""

from zoomdream.schedules.expressions import BINARY_OPERATORS, CONSTANTS, FUNCTIONS, compile_expression
from zoomdream.schedules.keyframes import Schedule, TextSchedule, parse_schedule, parse_text_schedule

__all__ = ["BINARY_OPERATORS", "CONSTANTS", "FUNCTIONS", "Schedule", "TextSchedule", "compile_expression",
           "parse_schedule", "parse_text_schedule"]
