-- fail: aggregate_not_allowed
SELECT race, SUM(income) / COUNT(*) AS mean_income FROM pums GROUP BY race
