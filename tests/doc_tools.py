"""The tools and types of the Byzer-LLM documents' function-calling and impl examples."""

import datetime
from typing import Annotated

import pydantic
from dateutil.relativedelta import relativedelta


def compute_date_range(
    count: Annotated[int, "时间跨度，数值类型"],
    unit: Annotated[str, "时间单位，字符串类型", {"enum": ["day", "week", "month", "year"]}],
) -> list[str]:
    """
    计算日期范围

    Args:
        count: 时间跨度，数值类型
        unit: 时间单位，字符串类型，可选值为 day,week,month,year
    """
    now = datetime.datetime.now()
    now_str = now.strftime("%Y-%m-%d %H:%M:%S")
    delta = {
        "day": relativedelta(days=count),
        "week": relativedelta(weeks=count),
        "month": relativedelta(months=count),
        "year": relativedelta(years=count),
    }[unit]
    return [(now - delta).strftime("%Y-%m-%d %H:%M:%S"), now_str]


def compute_now() -> str:
    """
    计算当前时间
    """
    return datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")


class Story(pydantic.BaseModel):
    """
    故事
    """

    title: str = pydantic.Field(description="故事的标题")
    body: str = pydantic.Field(description="故事主体")


class Time(pydantic.BaseModel):
    time: str = pydantic.Field(..., description="时间，时间格式为 yyyy-MM-dd")


class TimeRange(pydantic.BaseModel):
    start: str = pydantic.Field(..., description="开始时间，时间格式为 yyyy-MM-dd")
    end: str = pydantic.Field(..., description="截止时间，时间格式为 yyyy-MM-dd")
