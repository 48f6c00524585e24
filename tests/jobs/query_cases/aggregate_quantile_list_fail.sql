-- fail: aggregate_not_allowed
SELECT race, QUANTILE_CONT(income, [0.1, 0.9]) AS x FROM pums GROUP BY race
