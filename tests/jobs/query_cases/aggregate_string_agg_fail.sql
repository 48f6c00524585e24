-- fail: aggregate_not_allowed
SELECT race, STRING_AGG(CAST(income AS VARCHAR), ',') AS x FROM pums GROUP BY race
