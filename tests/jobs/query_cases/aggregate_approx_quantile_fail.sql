-- fail: aggregate_not_allowed
SELECT race, APPROX_QUANTILE(income, 0.5) AS x FROM pums GROUP BY race
