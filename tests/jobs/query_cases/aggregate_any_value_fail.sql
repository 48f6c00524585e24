-- fail: aggregate_not_allowed
SELECT race, ANY_VALUE(income) AS x FROM pums GROUP BY race
