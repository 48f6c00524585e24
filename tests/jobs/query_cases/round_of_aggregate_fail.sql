-- fail: aggregate_output
SELECT race, ROUND(AVG(income), 2) AS mean_income FROM pums GROUP BY race
