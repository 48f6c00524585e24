-- fail: aggregate_not_allowed
SELECT STRING_AGG(CAST(income AS VARCHAR), ',') AS s FROM pums
