-- fail: aggregate_argument, column: pums.income
SELECT QUANTILE_CONT(CASE WHEN race = 5 THEN income ELSE 0 END, 0.5) AS q FROM pums
