-- fail: aggregate_not_allowed
SELECT race, ARG_MAX(income, age) AS x FROM pums GROUP BY race
